"""A1111's ``modules.sd_vae`` for drop-in extensions: the VAE files under ``models/VAE`` and the selected one
(the ``sd_vae`` option, which Easel's processing applies per job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.extensions import compat

unspecified = object()
VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")


def _vae_files() -> dict[str, str]:
    folder = Path(compat.facade().settings.model_paths.vae)
    found: dict[str, str] = {}
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            weights = path.is_file() and path.suffix in VAE_SUFFIXES
            if weights or (path.is_dir() and (path / "config.json").is_file()):
                found[path.name] = str(path)
    return found


def refresh_vae_list() -> None:
    """The list is read from disk on each access."""


def find_vae_near_checkpoint(checkpoint_file: str) -> str | None:
    stem = Path(checkpoint_file).with_suffix("")
    for suffix in (".vae.safetensors", ".vae.pt", ".vae.ckpt"):
        candidate = Path(str(stem) + suffix)
        if candidate.is_file():
            return str(candidate)
    return None


def reload_vae_weights(sd_model: Any = None, vae_file: Any = unspecified) -> Any:
    """Select ``vae_file`` (a path or name; None = the checkpoint's own): Easel applies it from the next job."""
    if vae_file is not unspecified:
        name = "None" if vae_file is None else Path(str(vae_file)).name
        compat.facade().settings.update_options({"sd_vae": name})
    from modules.extensions.a1111_models import current_model_view

    return current_model_view()


def __getattr__(name: str) -> Any:
    if name == "vae_dict":
        return _vae_files()
    if name in ("loaded_vae_file", "base_vae"):
        selected = compat.facade().settings.options.sd_vae
        return _vae_files().get(selected) if selected not in ("Automatic", "None") else None
    if name == "checkpoint_info":
        from modules.sd_models import select_checkpoint

        return select_checkpoint()
    raise AttributeError(f"module 'modules.sd_vae' has no attribute {name!r}")
