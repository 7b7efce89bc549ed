"""Poor man's outpainting (img2img script): grow the picture in the chosen directions and inpaint the new area
with the chosen masked-content fill. The work is done by ``modules.processing.outpaint``; this file is the Script
API wrapper (argument order: pixels, mask_blur, inpainting_fill, direction)."""

from __future__ import annotations

from typing import Any

import modules.scripts as scripts
from modules.processing import Processed, process_images
from modules.processing.outpaint import DIRECTIONS, finish_outpaint, prepare_outpaint

FILL_MODES = ("fill", "original", "latent noise", "latent nothing")


class Script(scripts.Script):
    def title(self) -> str:
        return "Poor man's outpainting"

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
