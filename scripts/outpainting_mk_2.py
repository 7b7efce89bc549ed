"""Outpainting mk2 (img2img script): grow the picture in the chosen directions with colour-matched noise in the
new area, then inpaint it. The work is done by ``modules.processing.outpaint``; this file is the Script API
wrapper (argument order: info, pixels, mask_blur, direction, noise_q, color_variation)."""

from __future__ import annotations

from typing import Any

import modules.scripts as scripts
from modules.processing import Processed, process_images
from modules.processing.outpaint import DIRECTIONS, finish_outpaint, prepare_outpaint


class Script(scripts.Script):
    def title(self) -> str:
        return "Outpainting mk2"

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
