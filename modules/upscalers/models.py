"""ESRGAN-family upscaler models (``models/ESRGAN``), loaded and run with spandrel.

spandrel detects the architecture (ESRGAN/RRDB, Real-ESRGAN, SwinIR, HAT, DAT, ...) and its hyper-parameters
from the state dict, so Easel keeps no architecture code. Two local rules sit on top:

- ``.safetensors`` files load always; pickle files (``.pth``/``.pt``/``.ckpt``) only with ``--allow-pickle``.
- spandrel's package ``__init__`` imports every architecture, and two of them (LaMa, RestoreFormer) import
  ``torchvision`` at module level although only they use it. torchvision's wheels do not match the CPU torch
  build here, so :func:`import_spandrel` imports spandrel with a placeholder ``torchvision`` visible for the
  duration of that import only (removed right after, so no other library believes torchvision exists); those
  two architectures then fail with a clear message if ever used, every other one works.

Large images are upscaled in overlapping tiles blended with linear ramps (:func:`tiled_upscale`), which bounds
memory by the tile size instead of the image size; written here because spandrel leaves tiling to the caller.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import re
import sys
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules.core import cancellation
from modules.core.errors import UserInputError
from modules.upscalers.base import resize_to, target_size

log = logging.getLogger(__name__)

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")
_IMPORT_LOCK = threading.Lock()
_PLACEHOLDER_MODULES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def import_spandrel() -> types.ModuleType:
    """Import spandrel without torchvision installed (see the module docstring for why and how)."""
    with _IMPORT_LOCK:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        added = _add_torchvision_placeholder()
        try:
            import spandrel
        finally:
            for name in added:
                sys.modules.pop(name, None)
        return spandrel


def _add_torchvision_placeholder() -> list[str]:
    if importlib.util.find_spec("torchvision") is not None:
        return []
    added = []
    for name in _PLACEHOLDER_MODULES:
        module = types.ModuleType(name)
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        module.__path__ = []  # type: ignore[attr-defined]
        sys.modules[name] = module
        added.append(name)

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("this model architecture needs torchvision, which is not installed")

    functional = sys.modules["torchvision.transforms.functional"]
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    functional.InterpolationMode = types.SimpleNamespace(  # type: ignore[attr-defined]
        NEAREST="nearest", BILINEAR="bilinear", BICUBIC="bicubic")
    return added


def guess_scale(name: str, default: int = 4) -> int:
    """Native factor from the file name ("4x-UltraSharp", "RealESRGAN_x2plus"), until the model is loaded."""
    match = re.search(r"(?:^|[^a-z0-9])(\d)x|x(\d)(?:[^0-9]|$)", name.lower())
    if match:
        return int(match.group(1) or match.group(2))
    return default


@dataclass(frozen=True)
class ModelFile:
    name: str
    path: Path

    @property
    def is_pickle(self) -> bool:
        return self.path.suffix.lower() in PICKLE_SUFFIXES


def scan_model_files(folder: Path, allow_pickle: bool) -> tuple[list[ModelFile], list[Path]]:
    """Usable model files under ``folder`` (safetensors preferred when both exist) and the skipped ones."""
    found: dict[str, ModelFile] = {}
    skipped: list[Path] = []
    if not folder.is_dir():
        return [], []
    for path in sorted(folder.rglob("*")):
        suffix = path.suffix.lower()
        if not path.is_file() or suffix not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
            continue
        if suffix in PICKLE_SUFFIXES and not allow_pickle:
            skipped.append(path)
            continue
        existing = found.get(path.stem)
        if existing is None or (existing.is_pickle and suffix in SAFE_SUFFIXES):
            found[path.stem] = ModelFile(path.stem, path)
    return sorted(found.values(), key=lambda item: item.name.lower()), skipped


class ModelUpscaler:
    """One model file; the network is loaded on first use by the owning service (which caches it)."""

    def __init__(self, file: ModelFile, load: Callable[[ModelFile], Any], tile: Callable[[], tuple[int, int]]):
        self.name = file.name
        self.file = file
        self.scale = float(guess_scale(file.name))
        self._load = load
        self._tile = tile

    def upscale(self, image: Image.Image, scale: float) -> Image.Image:
        size = target_size(image, scale)
        model = self._load(self.file)
        self.scale = float(model.scale)
        tile, overlap = self._tile()
        current = image.convert("RGB")
        for _ in range(3):  # a 2x model asked for 4x runs twice; never more than three passes
            if current.width >= size[0] and current.height >= size[1]:
                break
            before = current.size
            cancellation.checkpoint()
            current = run_model(model, current, tile, overlap)
            if current.size == before:
                break
        return resize_to(current, size)


def load_model_file(file: ModelFile, device: torch.device, allow_pickle: bool) -> Any:
    if file.is_pickle and not allow_pickle:
        raise UserInputError("upscaler", f"{file.path.name} is a pickle file; start Easel with --allow-pickle to "
                                         "load it, or convert it to .safetensors")
    spandrel = import_spandrel()
    try:
        descriptor = spandrel.ModelLoader(device=device).load_from_file(str(file.path))
    except spandrel.UnsupportedModelError as exc:
        raise UserInputError("upscaler", f"{file.path.name}: unsupported upscaler architecture ({exc})") from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UserInputError("upscaler", f"{file.path.name} is not an image-to-image model")
    descriptor.eval()
    return descriptor


def run_model(model: Any, image: Image.Image, tile: int, overlap: int) -> Image.Image:
    """One pass of a spandrel descriptor over an RGB image, tiled when the image exceeds ``tile``."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    pixels = torch.from_numpy(array).permute(2, 0, 1)[None]
    device = next(model.model.parameters()).device
    with torch.no_grad():
        if tile > 0 and max(pixels.shape[-2:]) > tile:
            output = tiled_upscale(lambda part: model(part.to(device)).float().cpu(), pixels, int(model.scale),
                                   tile, overlap)
        else:
            output = model(pixels.to(device)).float().cpu()
    result = output[0].clamp(0, 1).permute(1, 2, 0).numpy()
    return Image.fromarray((result * 255.0).round().astype(np.uint8))


def tiled_upscale(apply: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, scale: int, tile: int,
                  overlap: int) -> torch.Tensor:
    """Run ``apply`` (a ``scale``-x network) over overlapping ``tile``-sized tiles and blend them.

    Each tile's output is weighted by a ramp that rises over the overlap on sides that touch a neighbour, so the
    seams are cross-faded; the weights are accumulated and divided out, which makes any overlap size valid.
    """
    batch, channels, height, width = pixels.shape
    overlap = max(0, min(overlap, tile // 2))
    stride = max(1, tile - overlap)
    out = torch.zeros(batch, channels, height * scale, width * scale)
    weight = torch.zeros(1, 1, height * scale, width * scale)
    for top in _starts(height, tile, stride):
        for left in _starts(width, tile, stride):
            cancellation.checkpoint()  # one tile is the unit of work a cancel waits for
            bottom, right = min(top + tile, height), min(left + tile, width)
            result = apply(pixels[:, :, top:bottom, left:right])
            ramp = _ramp(bottom - top, right - left, overlap, scale, top > 0, bottom < height, left > 0, right < width)
            out[:, :, top * scale:bottom * scale, left * scale:right * scale] += result[:, :channels] * ramp
            weight[:, :, top * scale:bottom * scale, left * scale:right * scale] += ramp
    return out / weight.clamp_min(1e-8)


def _starts(length: int, tile: int, stride: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def _ramp(height: int, width: int, overlap: int, scale: int, top: bool, bottom: bool, left: bool,
          right: bool) -> torch.Tensor:
    def axis(length: int, start: bool, end: bool) -> torch.Tensor:
        values = torch.ones(length * scale)
        span = overlap * scale
        if span > 0:
            rise = (torch.arange(span, dtype=torch.float32) + 0.5) / span
            if start:
                values[:span] = torch.minimum(values[:span], rise)
            if end:
                values[-span:] = torch.minimum(values[-span:], rise.flip(0))
        return values

    return (axis(height, top, bottom)[:, None] * axis(width, left, right)[None, :])[None, None]
