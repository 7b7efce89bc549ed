"""Poor man's outpainting (img2img script): grow the picture in the chosen directions and inpaint the new area
with the chosen masked-content fill. The work is done by ``modules.processing.outpaint``; this file is the Script
API wrapper (argument order: pixels, mask_blur, inpainting_fill, direction)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

import modules.scripts as scripts
from modules.extensions.script_args import ScriptArgs, argument_error
from modules.processing import Processed, process_images
from modules.processing.outpaint import DIRECTIONS, finish_outpaint, prepare_outpaint

FILL_MODES = ("fill", "original", "latent noise", "latent nothing")
Direction = Literal["left", "right", "up", "down"]
FillMode = Literal["fill", "original", "latent noise", "latent nothing"]
MAX_PIXELS_TO_EXPAND = 2048
"""The declaration's bound; the grown canvas is also checked against --max-output-pixels."""


class PoorMansOutpaintingArgs(ScriptArgs):
    pixels: int = Field(128, ge=8, le=MAX_PIXELS_TO_EXPAND)
    mask_blur: int = Field(4, ge=0, le=256)
    inpainting_fill: FillMode | Annotated[int, Field(ge=0, le=len(FILL_MODES) - 1)] = "fill"
    direction: list[Direction] = Field(default_factory=lambda: ["left", "right"], min_length=1, max_length=4)


class Script(scripts.Script):
    api_args = PoorMansOutpaintingArgs

    def title(self) -> str:
        return "Poor man's outpainting"

    def check_args(self, args: Any, request: Any, limits: Any, init_sizes: list[tuple[int, int]]) -> None:
        if not init_sizes:
            return
        width, height = init_sizes[0]
        width += args.pixels * sum(side in args.direction for side in ("left", "right"))
        height += args.pixels * sum(side in args.direction for side in ("up", "down"))
        if width * height > limits.max_output_pixels:
            raise argument_error("script_args", 0, "pixels",
                                 f"the grown canvas of {width}x{height} = {width * height} pixels is over the "
                                 f"limit of {limits.max_output_pixels} pixels (--max-output-pixels)")

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list:
        import gradio as gr

        pixels = gr.Slider(label="Pixels to expand", minimum=8, maximum=256, step=8, value=128)
        mask_blur = gr.Slider(label="Mask blur", minimum=0, maximum=64, step=1, value=4)
        inpainting_fill = gr.Radio(label="Masked content", choices=list(FILL_MODES), value="fill", type="index")
        direction = gr.CheckboxGroup(label="Outpainting direction", choices=list(DIRECTIONS),
                                     value=["left", "right"])
        return [pixels, mask_blur, inpainting_fill, direction]

    def run(self, p: Any, pixels: int, mask_blur: int, inpainting_fill: Any, direction: list[str]) -> Processed:
        fill = FILL_MODES.index(inpainting_fill) if isinstance(inpainting_fill, str) else int(inpainting_fill)
        plan = prepare_outpaint(p, int(pixels), list(direction), int(mask_blur), inpainting_fill=fill)
        processed = process_images(p)
        processed.images = finish_outpaint(plan, processed.images)
        return processed
