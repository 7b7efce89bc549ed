"""Prompt matrix: every combination of the ``|``-separated parts of a prompt, as one labelled grid.

``a cat|red|on a square`` renders ``a cat``, ``a cat, red``, ``a cat, on a square`` and ``a cat, red, on a
square``. Positional ``script_args``: ``[put_at_start, different_seeds, prompt_type ("positive" |
"negative"), variations_delimiter ("comma" | "space"), margin_size]``. Built on the public A1111 API only.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import gradio as gr
from pydantic import Field

import modules.scripts as scripts
from modules import images, shared
from modules.core.errors import UserInputError
from modules.extensions.script_args import ScriptArgs, argument_error
from modules.processing import fix_seed, process_images

MAX_OPTIONAL_PARTS = 16
"""2**16 combinations is already far beyond any sensible grid; --max-job-images usually stops earlier."""


class PromptMatrixArgs(ScriptArgs):
    put_at_start: bool = False
    different_seeds: bool = False
    prompt_type: Literal["positive", "negative"] = "positive"
    variations_delimiter: Literal["comma", "space"] = "comma"
    margin_size: int = Field(0, ge=0, le=500)


def combination_count(prompt: str, limit: int) -> int:
    """Images the matrix renders for ``prompt``; a 422 on the prompt field when over ``limit``."""
    optional = len(prompt.split("|")) - 1
    count = 1 << min(optional, MAX_OPTIONAL_PARTS + 1)
    if optional > MAX_OPTIONAL_PARTS or count > limit:
        raise UserInputError("prompt", f"{optional} '|' parts make {'over ' if optional > MAX_OPTIONAL_PARTS else ''}"
                                       f"{count} combinations; the limit is {limit} images per job "
                                       "(--max-job-images)")
    return count


class Script(scripts.Script):
    api_args = PromptMatrixArgs

    def title(self) -> str:
        return "Prompt matrix"

    def check_args(self, args: Any, request: Any, limits: Any, init_sizes: list[tuple[int, int]]) -> None:
        prompt = request.prompt if args.prompt_type == "positive" else request.negative_prompt
        combination_count(prompt if isinstance(prompt, str) else "", limits.max_job_images)

    def ui(self, is_img2img: bool) -> list[Any]:
        put_at_start = gr.Checkbox(label="Put variable parts at start of prompt", value=False)
        different_seeds = gr.Checkbox(label="Use different seed for each picture", value=False)
        prompt_type = gr.Radio(["positive", "negative"], label="Select prompt", value="positive")
        variations_delimiter = gr.Radio(["comma", "space"], label="Select joining char", value="comma")
        margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2)
        return [put_at_start, different_seeds, prompt_type, variations_delimiter, margin_size]

    def run(self, p: Any, put_at_start: bool = False, different_seeds: bool = False, prompt_type: str = "positive",
            variations_delimiter: str = "comma", margin_size: int = 0) -> Any:
        fix_seed(p)
        if prompt_type not in ("positive", "negative"):
            raise argument_error("script_args", 2, "prompt_type",
                                 f"must be 'positive' or 'negative', not {prompt_type!r}")
        original = p.prompt if prompt_type == "positive" else p.negative_prompt
        combination_count(original, 1 << MAX_OPTIONAL_PARTS)
        parts = [part.strip() for part in original.split("|")]
        base, optional = parts[0], parts[1:]
        joiner = ", " if variations_delimiter == "comma" else " "
        prompts = []
        for combination in range(1 << len(optional)):
            chosen = [text for bit, text in enumerate(optional) if combination & (1 << bit)]
            pieces = [*chosen, base] if put_at_start else [base, *chosen]
            prompts.append(joiner.join(piece for piece in pieces if piece))
        count = len(prompts)
        p.batch_size, p.n_iter = 1, count
        if prompt_type == "positive":
            p.prompt = prompts
        else:
            p.negative_prompt = prompts
        p.all_seeds = [p.seed + (index if different_seeds else 0) for index in range(count)]
        p.all_subseeds = [p.subseed + (index if different_seeds else 0) for index in range(count)]
        p.do_not_save_grid = True
        shared.state.job_count = count
        processed = process_images(p)
        if len(processed.images) != count:
            return processed
        col_bits = len(optional) - len(optional) // 2
        cols, rows = 1 << col_bits, 1 << (len(optional) // 2)
        hor = [[images.GridAnnotation(optional[bit], bool(col & (1 << bit))) for bit in range(col_bits)]
               for col in range(cols)]
        ver = [[images.GridAnnotation(optional[col_bits + bit], bool(row & (1 << bit)))
                for bit in range(len(optional) // 2)] for row in range(rows)]
        grid = images.image_grid(processed.images, rows=rows)
        width, height = processed.images[0].width, processed.images[0].height
        grid = images.draw_grid_annotations(grid, width, height, hor, ver if len(optional) > 1 else [],
                                            int(margin_size))
        processed.images.insert(0, grid)
        processed.infotexts.insert(0, processed.infotexts[0])
        processed.index_of_first_image = 1
        if shared.opts.grid_save:
            images.save_image(grid, p.outpath_grids, "prompt_matrix", info=processed.infotexts[0], grid=True, p=p)
        assert math.log2(cols * rows) == len(optional)
        return processed
