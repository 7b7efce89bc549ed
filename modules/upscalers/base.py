"""The upscaler protocol and the plain resamplers ("None", "Lanczos", "Nearest").

An upscaler maps an image and a scale to a bigger image. Model upscalers have a native factor (2x, 4x); they
are run until the image is at least as large as asked and then resized to the exact size, so every upscaler
returns ``int(width * scale) x int(height * scale)`` pixels whatever its native factor.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from PIL import Image


@runtime_checkable
class Upscaler(Protocol):
    name: str
    scale: float
    """Native factor reported to clients (A1111's ``/upscalers`` ``scale``)."""

    def upscale(self, image: Image.Image, scale: float) -> Image.Image: ...


def target_size(image: Image.Image, scale: float) -> tuple[int, int]:
    return max(1, int(image.width * scale)), max(1, int(image.height * scale))


class ResampleUpscaler:
    """Resize with one PIL filter; the cheap baseline every UI offers."""

    def __init__(self, name: str, resample: Image.Resampling) -> None:
        self.name = name
        self.resample = resample
        self.scale = 4.0

    def upscale(self, image: Image.Image, scale: float) -> Image.Image:
        size = target_size(image, scale)
        return image if size == image.size else image.resize(size, self.resample)


def resize_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Final exact-size step after a model upscale (Lanczos, as A1111 does)."""
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)
