"""Prompts from file or textbox: one job per line, each line a prompt or ``--key value`` options.

A line like ``--prompt "a red cat" --steps 4 --negative_prompt "blue"`` sets those fields for its job; a plain
line is the prompt. Positional ``script_args``: ``[checkbox_iterate, checkbox_iterate_batch, prompt_position
("start" | "end"), prompt_txt]``. Built on the public A1111 API only.
"""

from __future__ import annotations

import shlex
from copy import copy
from typing import Any, Literal

import gradio as gr
from pydantic import Field, ValidationError

import modules.scripts as scripts
from modules import shared
from modules.core.errors import UserInputError
from modules.extensions.script_args import ScriptArgs, argument_error
from modules.processing import Processed, fix_seed, process_images
from modules.processing.params import check_limits

MAX_PROMPT_TXT_CHARS = 1_000_000
PROMPT_TXT_INDEX = 3


class PromptsFromFileArgs(ScriptArgs):
    checkbox_iterate: bool = False
    checkbox_iterate_batch: bool = False
    prompt_position: Literal["start", "end"] = "start"
    prompt_txt: str = Field("", max_length=MAX_PROMPT_TXT_CHARS)


def _bool(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "on")


FIELDS: dict[str, Any] = {
    "sd_model": str, "outpath_samples": str, "outpath_grids": str, "prompt_for_display": str, "prompt": str,
    "negative_prompt": str, "styles": lambda text: [s.strip() for s in text.split(",") if s.strip()],
    "seed": int, "subseed_strength": float, "subseed": int, "seed_resize_from_h": int, "seed_resize_from_w": int,
    "sampler_index": int, "sampler_name": str, "scheduler": str, "batch_size": int, "n_iter": int, "steps": int,
    "cfg_scale": float, "width": int, "height": int, "restore_faces": _bool, "tiling": _bool,
    "do_not_save_samples": _bool, "do_not_save_grid": _bool, "denoising_strength": float,
}


def parse_line(line: str) -> dict[str, Any]:
    """``--key value`` pairs of one line (unknown keys are an error naming them); plain text is the prompt."""
    if not line.lstrip().startswith("--"):
        return {"prompt": line.strip()}
    tokens = shlex.split(line)
    result: dict[str, Any] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--"):
            raise ValueError(f"prompts from file: expected --key, got {token!r} in {line!r}")
        key = token[2:]
        if key not in FIELDS:
            raise ValueError(f"prompts from file: unknown option --{key}; known: {', '.join(FIELDS)}")
        values = []
        index += 1
        while index < len(tokens) and not tokens[index].startswith("--"):
            values.append(tokens[index])
            index += 1
        try:
            result[key] = FIELDS[key](" ".join(values))
        except ValueError as exc:
            raise ValueError(f"--{key}: {exc}") from None
    return result


def parse_lines(text: str) -> list[dict[str, Any]]:
    """Every non-empty line parsed; a bad line is a 422 naming the prompt_txt argument and the line."""
    jobs = []
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            jobs.append(parse_line(line))
        except ValueError as exc:
            raise argument_error("script_args", PROMPT_TXT_INDEX, "prompt_txt", f"line {number}: {exc}") from None
    return jobs


class Script(scripts.Script):
    api_args = PromptsFromFileArgs

    def title(self) -> str:
        return "Prompts from file or textbox"

    def check_args(self, args: Any, request: Any, limits: Any, init_sizes: list[tuple[int, int]]) -> None:
        """Each line's fields are checked as if they were the request's own (types, ranges, limits)."""
        base = request.model_dump(exclude_unset=True)
        fields = type(request).model_fields
        total = 0
        for number, job in enumerate(parse_lines(args.prompt_txt), start=1):
            merged = {**base, **{key: value for key, value in job.items() if key in fields}}
            try:
                line_params = type(request).model_validate(merged)
                check_limits(line_params, limits)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first.get("loc", ()))
                raise argument_error("script_args", PROMPT_TXT_INDEX, "prompt_txt",
                                     f"line {number}: {where}: {first.get('msg')}") from None
            except UserInputError as exc:
                raise argument_error("script_args", PROMPT_TXT_INDEX, "prompt_txt",
                                     f"line {number}: {exc.message}") from None
            total += line_params.total_images
        limits.check_images("script_args[3]", total, "images (all lines together)")

    def ui(self, is_img2img: bool) -> list[Any]:
        checkbox_iterate = gr.Checkbox(label="Iterate seed every line", value=False)
        checkbox_iterate_batch = gr.Checkbox(label="Use same random seed for all lines", value=False)
        prompt_position = gr.Radio(["start", "end"], label="Insert prompts at the", value="start")
        prompt_txt = gr.Textbox(label="List of prompt inputs", lines=2)
        return [checkbox_iterate, checkbox_iterate_batch, prompt_position, prompt_txt]

    def run(self, p: Any, checkbox_iterate: bool = False, checkbox_iterate_batch: bool = False,
            prompt_position: str = "start", prompt_txt: str = "") -> Any:
        jobs = parse_lines(prompt_txt)
        if checkbox_iterate or checkbox_iterate_batch:
            fix_seed(p)
        shared.state.job_count = sum(job.get("n_iter", p.n_iter) for job in jobs)
        all_images: list[Any] = []
        all_prompts: list[str] = []
        infotexts: list[str] = []
        seeds: list[int] = []
        for job in jobs:
            if shared.state.interrupted:
                break
            pc = copy(p)
            pc.extra_generation_params = dict(p.extra_generation_params)
            pc.override_settings = dict(p.override_settings or {})
            for key, value in job.items():
                if key == "sd_model":
                    pc.override_settings["sd_model_checkpoint"] = value
                elif key == "prompt" and p.prompt:
                    pc.prompt = f"{value} {p.prompt}" if prompt_position == "start" else f"{p.prompt} {value}"
                else:
                    setattr(pc, key, value)
            processed = process_images(pc)
            all_images.extend(processed.images)
            all_prompts.extend(processed.all_prompts)
            infotexts.extend(processed.infotexts)
            seeds.extend(processed.all_seeds)
            if checkbox_iterate:
                p.seed = p.seed + pc.batch_size * pc.n_iter
        return Processed(p, all_images, p.seed, infotexts[0] if infotexts else "", all_prompts=all_prompts,
                         all_seeds=seeds, infotexts=infotexts)
