"""The name -> family map and `detect()`, which asks every family in priority order."""

from __future__ import annotations

from pathlib import Path

from modules.models.families.base import FamilyError, ModelFamily, is_diffusers_folder
from modules.models.families.header import read_header

FAMILIES: dict[str, ModelFamily] = {}


def register(family: ModelFamily) -> ModelFamily:
    """Add a family; a second family with the same name is a programming error, not an override."""
    if family.name in FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise FamilyError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}") from None


def ordered_families() -> list[ModelFamily]:
    """Most specific first (inpaint, v-prediction, playground before their base), then by name for stability."""
    return sorted(FAMILIES.values(), key=lambda family: (family.priority, family.name))


def detect(path: Path, *, allow_pickle: bool = False) -> ModelFamily:
    """The family of a diffusers folder or single-file checkpoint, from its configs or header alone."""
    path = Path(path)
    if path.is_dir():
        if not is_diffusers_folder(path):
            raise FamilyError(f"{path}: not a diffusers folder (no model_index.json)")
        for family in ordered_families():
            if family.match_folder(path):
                return family
        raise FamilyError(f"{path}: diffusers folder of no known model family ({', '.join(sorted(FAMILIES))})")
    if not path.is_file():
        raise FamilyError(f"{path}: no such checkpoint file or folder")
    header = read_header(path, allow_pickle=allow_pickle)
    for family in ordered_families():
        if family.match_header(header):
            return family
    raise FamilyError(f"{path}: checkpoint of no known model family ({', '.join(sorted(FAMILIES))})")
