"""SD upscale (img2img): upscale the init image, then img2img it tile by tile and blend the overlaps.

Positional ``script_args`` in A1111's order: ``["", overlap, upscaler, scale]`` - the first slot is the UI's
info text, ``upscaler`` is a name ("Lanczos", "Nearest", a registered upscaler) or an index into
``shared.sd_upscalers``. Tiles are ``p.width`` x ``p.height``. Built on the public A1111 API only.
"""

from __future__ import annotations

import math
from copy import copy
from typing import Any

import gradio as gr
from pydantic import Field

import modules.scripts as scripts
from modules import images, shared
from modules.extensions.script_args import ScriptArgs, argument_error
from modules.processing import Processed, fix_seed, process_images

MAX_SCALE = 16.0
"""The declaration's bound; the limit in force is --max-output-pixels on the upscaled image."""


class SDUpscaleArgs(ScriptArgs):
    info: str | None = Field("", max_length=100_000, description="the UI's note; ignored")
    overlap: int = Field(64, ge=0, le=2048)
    upscaler_index: int | str = Field("Lanczos", description="an upscaler name or an index into the upscalers")
    scale_factor: float = Field(2.0, ge=1.0, le=MAX_SCALE)


def tile_count(width: int, height: int, tile_w: int, tile_h: int, overlap: int) -> int:
    """Tiles :func:`modules.images.split_grid` cuts an image of ``width x height`` into."""
    cols = max(1, math.ceil((width - overlap) / max(1, tile_w - overlap)))
    rows = max(1, math.ceil((height - overlap) / max(1, tile_h - overlap)))
    return cols * rows


def upscaler_name(value: Any) -> str:
    names = [upscaler.name for upscaler in shared.sd_upscalers]
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        index = int(value)
        if not 0 <= index < len(names):
            raise argument_error("script_args", 2, "upscaler_index",
                                 f"SD upscale: upscaler index {index} out of range 0..{len(names) - 1}")
        return names[index]
    for name in names:
        if name.lower() == str(value).lower():
            return name
    raise argument_error("script_args", 2, "upscaler_index",
                         f"SD upscale: upscaler {value!r} not found; available: {', '.join(names)}")


class Script(scripts.Script):
    api_args = SDUpscaleArgs

    def title(self) -> str:
        return "SD upscale"

    def check_args(self, args: Any, request: Any, limits: Any, init_sizes: list[tuple[int, int]]) -> None:
        upscaler_name(args.upscaler_index)
        if args.overlap >= min(request.width, request.height):
            raise argument_error("script_args", 1, "overlap", f"{args.overlap} must be below the tile size "
                                                              f"(width x height: {request.width}x{request.height})")
        if not init_sizes:
            return
        width, height = (round(side * args.scale_factor) for side in init_sizes[0])
        pixels = width * height
        if pixels > limits.max_output_pixels:
            raise argument_error("script_args", 3, "scale_factor",
                                 f"x{args.scale_factor:g} makes {width}x{height} = {pixels} pixels; the limit is "
                                 f"{limits.max_output_pixels} pixels (--max-output-pixels)")
        tiles = tile_count(width, height, request.width, request.height, args.overlap)
        if tiles > limits.max_job_images:
            raise argument_error("script_args", 3, "scale_factor",
                                 f"{tiles} tiles of {request.width}x{request.height}; the limit is "
                                 f"{limits.max_job_images} per job (--max-job-images)")

    def show(self, is_img2img: bool) -> bool:
        return is_img2img

    def ui(self, is_img2img: bool) -> list[Any]:
        info = gr.HTML("<p>Will upscale the image by the selected scale factor; use width and height sliders "
                       "to set tile size</p>")
        overlap = gr.Slider(minimum=0, maximum=256, step=16, label="Tile overlap", value=64)
        scale_factor = gr.Slider(minimum=1.0, maximum=4.0, step=0.05, label="Scale Factor", value=2.0)
        names = [upscaler.name for upscaler in shared.sd_upscalers]
        upscaler_index = gr.Radio(label="Upscaler", choices=names, value=names[1] if len(names) > 1 else names[0])
        return [info, overlap, upscaler_index, scale_factor]

    def run(self, p: Any, _: Any = "", overlap: int = 64, upscaler_index: Any = "Lanczos",
            scale_factor: float = 2.0) -> Any:
        fix_seed(p)
        overlap = int(overlap)
        name = upscaler_name(upscaler_index)
        init = p.init_images[0].convert("RGB")
        upscaled = images.upscale_with(name, init, float(scale_factor))
        grid = images.split_grid(upscaled, tile_w=p.width, tile_h=p.height, overlap=overlap)
        tiles = [tile for _, _, row in grid.tiles for tile in row]
        shared.state.job_count = len(tiles)
        infotext = ""
        for tile in tiles:
            if shared.state.interrupted:
                break
            pc = copy(p)
            pc.extra_generation_params = dict(p.extra_generation_params)
            pc.batch_size, pc.n_iter = 1, 1
            pc.do_not_save_samples = True
            pc.init_images = [tile[2]]
            processed = process_images(pc)
            if processed.images:
                tile[2] = processed.images[0]
                infotext = infotext or processed.infotexts[0]
        combined = images.combine_grid(grid)
        if shared.opts.samples_save and not p.do_not_save_samples:
            images.save_image(combined, p.outpath_samples, "", p.seed, p.prompt, info=infotext, p=p)
        return Processed(p, [combined], p.seed, infotext, infotexts=[infotext])
