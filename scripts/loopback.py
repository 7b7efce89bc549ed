"""Loopback (img2img): feed each result back as the next init image, moving denoising towards a final value.

Positional ``script_args``: ``[loops, final_denoising_strength, denoising_curve ("Aggressive" | "Linear" |
"Lazy"), append_interrogation ("None")]``. Returns a grid of the loops first (when more than one image), then
every loop's image. Built on the public A1111 API only.
"""

from __future__ import annotations

import math
from copy import copy
from typing import Any, Literal

import gradio as gr
from pydantic import Field

import modules.scripts as scripts
from modules import images, shared
from modules.extensions.script_args import ScriptArgs, argument_error
from modules.processing import Processed, fix_seed, process_images

MAX_LOOPS = 10000
"""The declaration's bound; the limit in force is --max-job-images (one image per loop)."""


class LoopbackArgs(ScriptArgs):
    loops: int = Field(4, ge=1, le=MAX_LOOPS)
    final_denoising_strength: float = Field(0.5, ge=0.0, le=1.0)
    denoising_curve: Literal["Aggressive", "Linear", "Lazy"] = "Linear"
    append_interrogation: Literal["None"] = "None"


def strength_at(loop: int, loops: int, initial: float, final: float, curve: str) -> float:
    if loops <= 1:
        return initial
    t = loop / (loops - 1)
    if curve == "Aggressive":
        t = math.sin(t * math.pi * 0.5)
    elif curve == "Lazy":
        t = 1 - math.cos(t * math.pi * 0.5)
    return initial + (final - initial) * t


class Script(scripts.Script):
    api_args = LoopbackArgs

    def title(self) -> str:
        return "Loopback"

    def check_args(self, args: Any, request: Any, limits: Any, init_sizes: list[tuple[int, int]]) -> None:
        if args.loops > limits.max_job_images:
            raise argument_error("script_args", 0, "loops", f"{args.loops} loops asked; the limit is "
                                                            f"{limits.max_job_images} (--max-job-images)")

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list[Any]:
        loops = gr.Slider(minimum=1, maximum=32, step=1, label="Loops", value=4)
        final_denoising_strength = gr.Slider(minimum=0, maximum=1, step=0.01, label="Final denoising strength",
                                             value=0.5)
        denoising_curve = gr.Dropdown(label="Denoising strength curve", choices=["Aggressive", "Linear", "Lazy"],
                                      value="Linear")
        append_interrogation = gr.Dropdown(label="Append interrogated prompt at each iteration", choices=["None"],
                                           value="None")
        return [loops, final_denoising_strength, denoising_curve, append_interrogation]

    def run(self, p: Any, loops: int = 4, final_denoising_strength: float = 0.5, denoising_curve: str = "Linear",
            append_interrogation: str = "None") -> Any:
        fix_seed(p)
        loops = int(loops)
        initial = p.denoising_strength if p.denoising_strength is not None else 0.75
        shared.state.job_count = loops
        history: list[Any] = []
        infotexts: list[str] = []
        image = p.init_images[0]
        for loop in range(loops):
            if shared.state.interrupted:
                break
            pc = copy(p)
            pc.extra_generation_params = dict(p.extra_generation_params)
            pc.batch_size, pc.n_iter = 1, 1
            pc.init_images = [image]
            pc.denoising_strength = round(strength_at(loop, loops, initial, final_denoising_strength,
                                                      denoising_curve), 4)
            pc.seed = p.seed + loop
            processed = process_images(pc)
            if not processed.images:
                break
            image = processed.images[0]
            history.append(image)
            infotexts.append(processed.infotexts[0])
        result = list(history)
        result_infos = list(infotexts)
        if len(history) > 1:
            grid = images.image_grid(history, rows=1)
            result.insert(0, grid)
            result_infos.insert(0, infotexts[0])
            if shared.opts.grid_save and not p.do_not_save_grid:
                images.save_image(grid, p.outpath_grids, "loopback_grid", info=infotexts[0], grid=True, p=p)
        return Processed(p, result, p.seed, result_infos[0] if result_infos else "", infotexts=result_infos,
                         index_of_first_image=1 if len(history) > 1 else 0)
