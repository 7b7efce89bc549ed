"""Scores a picture against a ShapeSpec from its pixels alone, so any pipeline (ours or diffusers') can be judged.

- background colour: the nearest palette colour to the median of the border pixels;
- shape colour: the nearest palette colour to the median of the pixels that clearly differ from the background;
- shape: the geometry of the largest blob of pixels nearer the shape colour than the background: the ideal
  square, circle or upright triangle fitted to its bounding box that overlaps it best (for clean drawings this is
  the bounding-box fill ratio: square ~1.0, circle ~0.785, triangle ~0.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tools.embedded.shapes import PALETTE, ShapeSpec

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


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected blob of a boolean mask, so that stray speckles do not stretch the bounding box."""
    labels = np.zeros(mask.shape, dtype=np.int32)
    best_label, best_size, current = 0, 0, 0
    height, width = mask.shape
    for y, x in zip(*np.nonzero(mask), strict=True):
        if labels[y, x]:
            continue
        current += 1
        labels[y, x] = current
        stack, size = [(y, x)], 0
        while stack:
            cy, cx = stack.pop()
            size += 1
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = current
                    stack.append((ny, nx))
        if size > best_size:
            best_label, best_size = current, size
    return labels == best_label if best_label else np.zeros_like(mask)


def _templates(height: int, width: int) -> dict[str, np.ndarray]:
    """Ideal masks of each shape filling a height x width bounding box (pixel centres sampled)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    v = (yy + 0.5) / height  # 0 at the top edge, 1 at the bottom
    u = (xx + 0.5) / width - 0.5
    return {
        "square": np.ones((height, width), dtype=bool),
        "circle": u**2 + (v - 0.5) ** 2 <= 0.25,
        "triangle": np.abs(u) <= v / 2,
    }


def classify_shape(mask: np.ndarray) -> tuple[str | None, float]:
    """Name the shape in a boolean mask by its best overlap (IoU) with ideal shapes fitted to its bounding box.

    Returns the name and the mask's bounding-box fill ratio (square ~1.0, circle ~0.785, triangle ~0.5), which
    is what the IoU comparison amounts to for clean drawings but is less easily fooled by soft corners.
    """
    if mask.sum() < MIN_SHAPE_PIXELS:
        return None, 0.0
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    overlaps = {
        name: float((box & template).sum() / max(1, (box | template).sum()))
        for name, template in _templates(*box.shape).items()
    }
    return max(overlaps, key=overlaps.__getitem__), float(box.mean())


def score_image(image: Image.Image | np.ndarray, spec: ShapeSpec) -> Score:
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    border = np.concatenate([
        pixels[:BORDER].reshape(-1, 3), pixels[-BORDER:].reshape(-1, 3),
        pixels[:, :BORDER].reshape(-1, 3), pixels[:, -BORDER:].reshape(-1, 3),
    ])
    background_rgb = np.median(border, axis=0)
    background = nearest_colour(background_rgb)
    to_background = np.linalg.norm(pixels - background_rgb, axis=2)
    rough = to_background > DIFFERENCE_THRESHOLD
    if rough.sum() < MIN_SHAPE_PIXELS:
        shape, fill, colour = None, 0.0, None
    else:
        shape_rgb = np.median(pixels[rough], axis=0)
        colour = nearest_colour(shape_rgb)
        # The shape's outline is where a pixel is nearer the shape colour than the background: the 50% coverage
        # line, independent of how soft the edges are.
        closer = np.linalg.norm(pixels - shape_rgb, axis=2) < to_background
        shape, fill = classify_shape(largest_component(closer & (to_background > DIFFERENCE_THRESHOLD / 2)))
        if shape is None:
            colour = None
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
