"""The upscaler service: name -> upscaler, listed for ``/sdapi/v1/upscalers`` and used by hires fix and extras."""

from __future__ import annotations

import builtins
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from pydantic import BaseModel

from modules.core.errors import UserInputError
from modules.upscalers.base import ResampleUpscaler, Upscaler
from modules.upscalers.latent import LATENT_MODES
from modules.upscalers.models import ModelFile, ModelUpscaler, load_model_file, scan_model_files

log = logging.getLogger(__name__)

DEFAULT_TILE = 192
DEFAULT_TILE_OVERLAP = 8


def builtin_upscalers() -> list[Upscaler]:
    return [
        ResampleUpscaler("None", Image.Resampling.LANCZOS),
        ResampleUpscaler("Lanczos", Image.Resampling.LANCZOS),
        ResampleUpscaler("Nearest", Image.Resampling.NEAREST),
    ]


class UpscalerRegistry:
    """Name -> upscaler. Built-ins first, then the model files found in the ESRGAN folder."""

    def __init__(self) -> None:
        self._items: dict[str, Upscaler] = {}

    def register(self, upscaler: Upscaler) -> None:
        if upscaler.name in self._items or upscaler.name in LATENT_MODES:
            raise ValueError(f"an upscaler named {upscaler.name!r} is already registered")
        self._items[upscaler.name] = upscaler

    def names(self) -> list[str]:
        return list(self._items)

    def get(self, name: str, field: str = "upscaler") -> Upscaler:
        upscaler = self._items.get(name)
        if upscaler is None:
            allowed = ", ".join([*self._items, *LATENT_MODES])
            raise UserInputError(field, f"unknown upscaler {name!r}; available: {allowed}")
        return upscaler

    def items(self) -> list[Upscaler]:
        return list(self._items.values())


def esrgan_tile_settings(options: BaseModel) -> tuple[int, int]:
    """(tile, overlap) from A1111's ``ESRGAN_tile``/``ESRGAN_tile_overlap`` options (kept as extra option keys)."""
    extra = options.model_extra or {}
    return (int(extra.get("ESRGAN_tile", DEFAULT_TILE)), int(extra.get("ESRGAN_tile_overlap", DEFAULT_TILE_OVERLAP)))


class UpscalerService:
    """Upscalers for one models dir. Model networks are loaded lazily and the most recent one is kept."""

    def __init__(self, model_dir: Path, *, device: torch.device | None = None, allow_pickle: bool = False,
                 tile_settings: Callable[[], tuple[int, int]] | None = None) -> None:
        self.model_dir = model_dir
        self.device = device or torch.device("cpu")
        self.allow_pickle = allow_pickle
        self.tile_settings = tile_settings or (lambda: (DEFAULT_TILE, DEFAULT_TILE_OVERLAP))
        self.skipped: list[Path] = []
        self._lock = threading.Lock()
        self._loaded: tuple[Path, Any] | None = None
        self.registry = UpscalerRegistry()
        self.refresh()

    def refresh(self) -> None:
        registry = UpscalerRegistry()
        for upscaler in builtin_upscalers():
            registry.register(upscaler)
        files, self.skipped = scan_model_files(self.model_dir, self.allow_pickle)
        for file in files:
            if file.name in registry.names():
                log.warning("upscaler model %s shadows a built-in name; skipped", file.path)
                continue
            registry.register(ModelUpscaler(file, self._model, self.tile_settings))
        for path in self.skipped:
            log.info("upscaler %s skipped: pickle files need --allow-pickle", path.name)
        self.registry = registry
        with self._lock:
            self._loaded = None

    def _model(self, file: ModelFile) -> Any:
        with self._lock:
            if self._loaded is not None and self._loaded[0] == file.path:
                return self._loaded[1]
            self._loaded = None  # free the previous network before loading the next
            model = load_model_file(file, self.device, self.allow_pickle)
            self._loaded = (file.path, model)
            return model

    def get(self, name: str, field: str = "upscaler") -> Upscaler:
        return self.registry.get(name, field)

    def names(self) -> builtins.list[str]:
        return self.registry.names()

    def upscale(self, image: Image.Image, scale: float, name: str, field: str = "upscaler") -> Image.Image:
        return self.get(name, field).upscale(image, scale)

    def list(self) -> list[dict[str, Any]]:
        """A1111's ``/sdapi/v1/upscalers`` items."""
        items = []
        for upscaler in self.registry.items():
            file = upscaler.file if isinstance(upscaler, ModelUpscaler) else None
            items.append({
                "name": upscaler.name,
                "model_name": file.name if file is not None else None,
                "model_path": str(file.path) if file is not None else None,
                "model_url": None,
                "scale": upscaler.scale,
            })
        return items

    def latent_modes(self) -> builtins.list[dict[str, str]]:
        """A1111's ``/sdapi/v1/latent-upscale-modes`` items."""
        return [{"name": name} for name in LATENT_MODES]

    def unload(self) -> None:
        with self._lock:
            self._loaded = None
