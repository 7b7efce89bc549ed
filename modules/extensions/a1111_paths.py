"""A1111's path names (``modules.paths``/``modules.paths_internal``) answered from Easel's settings.

A1111 computes them at import time from its own folder; Easel reads the bound settings on each access, so the
folders are the ones ``--data-dir``/``--models-dir`` chose, and the extensions folder is the one scripts were
loaded from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modules.core.paths import REPO_ROOT
from modules.extensions import compat


def extensions_dir() -> str:
    try:
        roots = getattr(compat.bound(), "extension_roots", None)
    except RuntimeError:
        roots = None
    return str(roots[0] if roots else Path(REPO_ROOT) / "extensions")


def _settings() -> Any:
    try:
        return compat.bound().settings
    except RuntimeError:
        return None


def path_value(name: str) -> Any:
    """The value of A1111 path name ``name``; raises ``KeyError`` for a name A1111 does not define."""
    settings = _settings()
    data = Path(settings.data_paths.root) if settings is not None else Path(REPO_ROOT) / "data"
    models = Path(settings.model_paths.root) if settings is not None else Path(REPO_ROOT) / "models"
    values: dict[str, Any] = {
        "script_path": str(REPO_ROOT),
        "cwd": str(REPO_ROOT),
        "data_path": str(data),
        "models_path": str(models),
        "extensions_dir": extensions_dir(),
        "extensions_builtin_dir": str(Path(REPO_ROOT) / "extensions-builtin"),
        "config_states_dir": str(data / "config_states"),
        "sd_path": str(REPO_ROOT),
        "sd_configs_path": str(Path(REPO_ROOT) / "configs"),
        "sd_default_config": str(Path(REPO_ROOT) / "configs" / "v1-inference.yaml"),
        "sd_model_file": str(models / "Stable-diffusion" / "model.ckpt"),
        "default_sd_model_file": str(models / "Stable-diffusion" / "model.ckpt"),
        "roboto_ttf_file": str(Path(REPO_ROOT) / "modules" / "Roboto-Regular.ttf"),
        "normalized_filepath": lambda filepath: str(Path(filepath).absolute()),
    }
    if name == "paths":
        return {"Stable Diffusion": str(REPO_ROOT)}
    return values[name]
