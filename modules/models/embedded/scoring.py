"""Scores a picture against a ShapeSpec from its pixels alone, so any pipeline (ours or diffusers') can be judged.

- background colour: the nearest palette colour to the median of the border pixels;
- shape colour: the nearest palette colour to the median of the pixels that clearly differ from the background;
- shape: the geometry of that differing-pixel mask. The fill ratio of its bounding box separates the three
  shapes (square ~1.0, circle ~0.785, triangle ~0.5); a triangle is further told from a circle by being wide at
  the bottom and narrow at the top.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from modules.models.embedded.shapes import PALETTE, ShapeSpec

_NAMES = tuple(PALETTE)
_COLOURS = np.array([PALETTE[name] for name in _NAMES], dtype=np.float32)
BORDER = 2
DIFFERENCE_THRESHOLD = 60.0  # RGB distance from the background that counts as "part of the shape"
MIN_SHAPE_PIXELS = 12


@dataclass(frozen=True)
class Score:
    """What the pixels show, and whether each part matches the spec."""

    background: str
    colour: str | None
    shape: str | None
    fill_ratio: float
    background_ok: bool
    colour_ok: bool
    shape_ok: bool


def nearest_colour(rgb: np.ndarray) -> str:
    distances = np.linalg.norm(_COLOURS - rgb.astype(np.float32), axis=1)
    return _NAMES[int(np.argmin(distances))]


def classify_shape(mask: np.ndarray) -> tuple[str | None, float]:
    """Name the shape in a boolean mask, with the bounding-box fill ratio it was judged by."""
    if mask.sum() < MIN_SHAPE_PIXELS:
        return None, 0.0
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1], cols[0], cols[-1]
    box = mask[top : bottom + 1, left : right + 1]
    fill = float(box.mean())
    height = box.shape[0]
    band = max(1, height // 4)
    # An upright triangle is much narrower in its top quarter than in its bottom quarter; a circle is symmetric.
    top_width = box[:band].sum(axis=1).mean()
    bottom_width = box[-band:].sum(axis=1).mean()
    asymmetry = top_width / max(bottom_width, 1e-6)
    if fill >= 0.9:
        return "square", fill
    if fill < 0.62 or asymmetry < 0.5:
        return "triangle", fill
    return "circle", fill


def score_image(image: Image.Image | np.ndarray, spec: ShapeSpec) -> Score:
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    border = np.concatenate([
        pixels[:BORDER].reshape(-1, 3), pixels[-BORDER:].reshape(-1, 3),
        pixels[:, :BORDER].reshape(-1, 3), pixels[:, -BORDER:].reshape(-1, 3),
    ])
    background_rgb = np.median(border, axis=0)
    background = nearest_colour(background_rgb)
    mask = np.linalg.norm(pixels - background_rgb, axis=2) > DIFFERENCE_THRESHOLD
    shape, fill = classify_shape(mask)
    colour = nearest_colour(np.median(pixels[mask], axis=0)) if shape is not None else None
    return Score(
        background=background,
        colour=colour,
        shape=shape,
        fill_ratio=fill,
        background_ok=background == spec.background,
        colour_ok=colour == spec.colour,
        shape_ok=shape == spec.shape,
    )


def score_images(images: Sequence[Image.Image], specs: Sequence[ShapeSpec]) -> list[Score]:
    if len(images) != len(specs):
        raise ValueError(f"{len(images)} images but {len(specs)} specs")
    return [score_image(image, spec) for image, spec in zip(images, specs, strict=True)]


def adherence(scores: Iterable[Score]) -> dict[str, float]:
    """Percentages of images whose shape colour, background colour and shape match their prompt."""
    items = list(scores)
    if not items:
        return {"colour": 0.0, "background": 0.0, "shape": 0.0}
    count = len(items)
    return {
        "colour": 100.0 * sum(s.colour_ok for s in items) / count,
        "background": 100.0 * sum(s.background_ok for s in items) / count,
        "shape": 100.0 * sum(s.shape_ok for s in items) / count,
    }
