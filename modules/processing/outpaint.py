"""Outpainting: grow the canvas in some directions and inpaint only the new area.

The core of the "Outpainting mk2" and "Poor man's outpainting" scripts, as functions on a
:class:`~modules.processing.run.ProcessingRun` so the scripts stay thin and the behaviour is testable without
the Script API:

1. :func:`grow_canvas` makes the bigger canvas: the original in place, the new area pre-filled from the
   original's edge (edge colours stretched outwards, blurred, optionally with colour noise) and a mask that
   is white exactly on the new area;
2. :func:`prepare_outpaint` turns a run into an inpaint run over that canvas (whole picture, not "only masked");
3. :func:`finish_outpaint` pastes the original back over the results, so its pixels are kept exactly - the
   mask blur then only softens the new side of the border.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from modules.core.errors import UserInputError

DIRECTIONS = ("left", "right", "up", "down")
MULTIPLE = 8


@dataclass(frozen=True)
class OutpaintPlan:
    canvas: Image.Image
    mask: Image.Image  # white = new area to generate
    original: Image.Image
    box: tuple[int, int]  # where the original's top-left corner sits on the canvas


def _grow_amounts(size: tuple[int, int], pixels: int, directions: Iterable[str]) -> dict[str, int]:
    chosen = {direction.strip().lower() for direction in directions}
    unknown = chosen - set(DIRECTIONS)
    if unknown:
        raise UserInputError("direction", f"unknown direction(s) {sorted(unknown)}; allowed: {', '.join(DIRECTIONS)}")
    if not chosen:
        raise UserInputError("direction", "choose at least one direction to outpaint")
    if pixels <= 0:
        raise UserInputError("pixels", "pixels to expand must be positive")
    amounts = {direction: (pixels if direction in chosen else 0) for direction in DIRECTIONS}
    # The canvas must be a multiple of 8 on each side: the extra goes to a side that grows.
    for axis, (first, second) in ((0, ("left", "right")), (1, ("up", "down"))):
        total = size[axis] + amounts[first] + amounts[second]
        extra = -total % MULTIPLE
        if extra and (amounts[first] or amounts[second]):
            amounts[second if amounts[second] else first] += extra
    return amounts


def grow_canvas(image: Image.Image, pixels: int, directions: Iterable[str], *, color_variation: float = 0.0,
                seed: int = 0) -> OutpaintPlan:
    image = image.convert("RGB")
    amounts = _grow_amounts(image.size, pixels, directions)
    width = image.width + amounts["left"] + amounts["right"]
    height = image.height + amounts["up"] + amounts["down"]
    left, top = amounts["left"], amounts["up"]
    array = np.asarray(image)
    padded = np.pad(array, ((top, amounts["down"]), (left, amounts["right"]), (0, 0)), mode="edge")
    canvas = Image.fromarray(padded).filter(ImageFilter.GaussianBlur(max(2, pixels // 4)))
    if color_variation > 0:
        rng = np.random.default_rng(seed)
        noisy = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 255 * color_variation, (height, width, 3))
        canvas = Image.fromarray(noisy.clip(0, 255).astype(np.uint8))
    canvas.paste(image, (left, top))
    mask = Image.new("L", (width, height), 255)
    mask.paste(0, (left, top, left + image.width, top + image.height))
    return OutpaintPlan(canvas, mask, image, (left, top))


def prepare_outpaint(run: Any, pixels: int, directions: Iterable[str], mask_blur: int, *,
                     inpainting_fill: int = 1, color_variation: float = 0.0) -> OutpaintPlan:
    """Turn an img2img run into the outpainting inpaint run (changes ``run`` in place)."""
    if not run.init_images:
        raise UserInputError("init_images", "outpainting needs an init image")
    seed = run.seed if isinstance(run.seed, int) and run.seed >= 0 else 0
    plan = grow_canvas(run.init_images[0], pixels, directions, color_variation=color_variation, seed=seed)
    run.init_images = [plan.canvas]
    run.image_mask = plan.mask
    run.width, run.height = plan.canvas.size
    run.mask_blur = mask_blur
    run.inpainting_fill = inpainting_fill
    run.inpaint_full_res = False
    run.inpainting_mask_invert = 0
    run.resize_mode = 0
    run.extra_generation_params["Outpaint pixels"] = pixels
    run.extra_generation_params["Outpaint directions"] = " ".join(
        direction for direction in DIRECTIONS if direction in {d.lower() for d in directions})
    return plan


def finish_outpaint(plan: OutpaintPlan, images: list[Image.Image]) -> list[Image.Image]:
    finished = []
    for image in images:
        result = image.convert("RGB")
        if result.size != plan.canvas.size:
            result = result.resize(plan.canvas.size, Image.Resampling.LANCZOS)
        result.paste(plan.original, plan.box)
        finished.append(result)
    return finished


def outpaint(process: Callable[[Any], Any], run: Any, pixels: int, directions: Iterable[str], mask_blur: int = 4,
             *, inpainting_fill: int = 1, color_variation: float = 0.0) -> Any:
    """Prepare, process (``process(run)`` returns a ProcessedResult) and paste the original back."""
    plan = prepare_outpaint(run, pixels, list(directions), mask_blur, inpainting_fill=inpainting_fill,
                            color_variation=color_variation)
    result = process(run)
    result.images = finish_outpaint(plan, result.images)
    return result
