"""Outpainting mk2 (img2img script): grow the picture in the chosen directions with colour-matched noise in the
new area, then inpaint it. The work is done by ``modules.processing.outpaint``; this file is the Script API
wrapper (argument order: info, pixels, mask_blur, direction, noise_q, color_variation)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

import modules.scripts as scripts
from modules.extensions.script_args import ScriptArgs, argument_error
from modules.processing import Processed, process_images
from modules.processing.outpaint import DIRECTIONS, finish_outpaint, prepare_outpaint

Direction = Literal["left", "right", "up", "down"]
MAX_PIXELS_TO_EXPAND = 2048
"""The declaration's bound; the grown canvas is also checked against --max-output-pixels."""


class OutpaintingMk2Args(ScriptArgs):
    info: str | None = Field("", max_length=100_000, description="the UI's note; ignored")
    pixels: int = Field(128, ge=8, le=MAX_PIXELS_TO_EXPAND)
    mask_blur: int = Field(8, ge=0, le=256)
    direction: list[Direction] = Field(default_factory=lambda: list(DIRECTIONS), min_length=1, max_length=4)
    noise_q: float = Field(1.0, ge=0.0, le=4.0)
    color_variation: float = Field(0.05, ge=0.0, le=1.0)


def check_canvas(init_sizes: list[tuple[int, int]], pixels: int, direction: list[str], limits: Any,
                 pixels_index: int) -> None:
    """The grown canvas against --max-output-pixels (a 422 naming the ``pixels`` argument)."""
    if not init_sizes:
        return
    width, height = init_sizes[0]
    width += pixels * sum(side in direction for side in ("left", "right"))
    height += pixels * sum(side in direction for side in ("up", "down"))
    if width * height > limits.max_output_pixels:
        raise argument_error("script_args", pixels_index, "pixels",
                             f"the grown canvas of {width}x{height} = {width * height} pixels is over the limit "
                             f"of {limits.max_output_pixels} pixels (--max-output-pixels)")


class Script(scripts.Script):
    api_args = OutpaintingMk2Args

    def title(self) -> str:
        return "Outpainting mk2"

    def check_args(self, args: Any, request: Any, limits: Any, init_sizes: list[tuple[int, int]]) -> None:
        check_canvas(init_sizes, args.pixels, list(args.direction), limits, 1)

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list:
        import gradio as gr

        info = gr.HTML("<p>Recommended: denoising strength 0.8, sampler Euler a.</p>")
        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128)
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=8)
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=list(DIRECTIONS),
                                     value=list(DIRECTIONS))
        noise_q = gr.Slider(label="Fall-off exponent (lower=higher detail)", minimum=0.0, maximum=4.0, step=0.01,
                            value=1.0)
        color_variation = gr.Slider(label="Color variation", minimum=0.0, maximum=1.0, step=0.01, value=0.05)
        return [info, pixels, mask_blur, direction, noise_q, color_variation]

    def run(self, p: Any, _info: Any, pixels: int, mask_blur: int, direction: list[str], noise_q: float,
            color_variation: float) -> Processed:
        plan = prepare_outpaint(p, int(pixels), list(direction), int(mask_blur), inpainting_fill=1,
                                color_variation=float(color_variation))
        processed = process_images(p)
        processed.images = finish_outpaint(plan, processed.images)
        return processed
