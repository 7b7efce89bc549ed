"""The synthetic world the embedded model is trained on: one coloured shape on a coloured background.

Everything here is pure drawing (PIL + numpy) so the training data, the tests and the adherence scorer
share one definition of what "a red circle on a blue background" looks like.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

# Saturated, well separated colours so that a nearest-palette lookup on generated pixels is unambiguous.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 70, 220),
    "yellow": (245, 220, 40),
    "orange": (245, 135, 20),
    "purple": (140, 50, 185),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS: tuple[str, ...] = tuple(PALETTE)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Half-extent of the shape in pixels of a 64x64 image; "medium" is never named in a prompt.
SIZES: dict[str, tuple[int, int]] = {"small": (7, 10), "medium": (11, 15), "large": (16, 21)}
SIZE_WORDS: tuple[str, ...] = ("small", "large")
# Words the tokenizer keeps as single tokens: the prompt grammar plus a few common neighbours.
FILLER_WORDS: tuple[str, ...] = ("a", "an", "the", "on", "with", "and", "of", "background", "shape", "picture")
VOCABULARY: tuple[str, ...] = FILLER_WORDS + COLOURS + SHAPES + tuple(SIZES)

IMAGE_SIZE = 64
MARGIN = 3  # pixels kept free at the border so that border pixels always show the background


@dataclass(frozen=True)
class ShapeSpec:
    """One picture: the shape, its colour, the background colour, a size class and the centre in pixels."""

    shape: str
    colour: str
    background: str
    size: str = "medium"
    centre: tuple[float, float] = (32.0, 32.0)
    radius: float = 13.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        for field_name in ("colour", "background"):
            if getattr(self, field_name) not in PALETTE:
                raise ValueError(f"{field_name} must be one of {COLOURS}, got {getattr(self, field_name)!r}")
        if self.colour == self.background:
            raise ValueError("shape colour and background colour must differ")
        if self.size not in SIZES:
            raise ValueError(f"size must be one of {tuple(SIZES)}, got {self.size!r}")


def random_spec(rng: random.Random, image_size: int = IMAGE_SIZE) -> ShapeSpec:
    """Draw a spec uniformly over shape, colour pair and size, with a random position that fits inside."""
    shape = rng.choice(SHAPES)
    colour, background = rng.sample(COLOURS, 2)
    size = rng.choice(tuple(SIZES))
    low, high = SIZES[size]
    radius = rng.uniform(low, high) * image_size / IMAGE_SIZE
    lo, hi = radius + MARGIN, image_size - radius - MARGIN
    centre = (rng.uniform(lo, hi), rng.uniform(lo, hi))
    return ShapeSpec(shape, colour, background, size, centre, radius)


def prompt_for(spec: ShapeSpec, with_size: bool = True, with_colour: bool = True) -> str:
    """The training/eval prompt, e.g. "a small red circle on a blue background" (medium size is unnamed).

    Without ``with_colour`` the shape's colour is left unsaid ("a circle on a blue background"): any colour
    but the background's fits, which is what lets a negative prompt ("red") steer it.
    """
    size = f"{spec.size} " if with_size and spec.size in SIZE_WORDS else ""
    colour = f"{spec.colour} " if with_colour else ""
    return f"a {size}{colour}{spec.shape} on a {spec.background} background"


def _polygon(spec: ShapeSpec, scale: float) -> list[tuple[float, float]]:
    cx, cy, r = spec.centre[0] * scale, spec.centre[1] * scale, spec.radius * scale
    if spec.shape == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    # Upright isosceles triangle filling half of its 2r x 2r bounding box.
    return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]


def draw(spec: ShapeSpec, size: int = IMAGE_SIZE, supersample: int = 4) -> Image.Image:
    """Render the spec as an RGB image; supersampling gives anti-aliased edges like a real photo would have."""
    scale = size / IMAGE_SIZE * supersample
    big = size * supersample
    image = Image.new("RGB", (big, big), PALETTE[spec.background])
    pen = ImageDraw.Draw(image)
    fill = PALETTE[spec.colour]
    if spec.shape == "circle":
        cx, cy, r = spec.centre[0] * scale, spec.centre[1] * scale, spec.radius * scale
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        pen.polygon(_polygon(spec, scale), fill=fill)
    if supersample > 1:
        image = image.resize((size, size), Image.Resampling.BOX)
    return image


def draw_batch(specs: list[ShapeSpec], size: int = IMAGE_SIZE) -> torch.Tensor:
    """Images as a float tensor (N, 3, H, W) in [-1, 1], the range the VAE works in."""
    arrays = np.stack([np.asarray(draw(spec, size), dtype=np.float32) for spec in specs])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).div(127.5).sub(1.0).contiguous()


def random_batch(rng: random.Random, count: int, size: int = IMAGE_SIZE) -> tuple[list[ShapeSpec], torch.Tensor]:
    """A fresh batch of specs and their drawings."""
    specs = [random_spec(rng, size) for _ in range(count)]
    return specs, draw_batch(specs, size)
