"""X/Y/Z plot: sweep up to three parameters and assemble a labelled grid (a built-in script).

Written against the public A1111 script API, like any extension (plus Easel's ``UserInputError``). Positional
``script_args`` (API ``script_name: "x/y/z plot"``)::

    [x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values,
     z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds,
     vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size, csv_mode]

``*_type`` is A1111 v1.10.1's index into the axis list of the tab (txt2img: 4 = Steps, 6 = CFG Scale;
img2img: 5 = CFG Scale, 6 = Image CFG Scale; see :data:`AXES`) or the axis label itself ("Steps"). An axis
Easel cannot sweep, an unknown one, or a value it cannot apply is a ``UserInputError`` (HTTP 422) naming the
``script_args`` position, raised before any image is made where possible. ``*_values`` is text:
``1-5``, ``1-10 (+2)`` (step), ``1-10 [5]`` (count), float ranges, or a comma list (CSV quoting allowed).
``*_values_dropdown`` (a list) replaces the text for axes with choices. The result holds the grid first (with
the Z sub-grids after it when asked), then every image when ``include_lone_images``.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable
from copy import copy
from dataclasses import dataclass
from typing import Any

import gradio as gr
from pydantic import Field

import modules.scripts as scripts
from modules import images, shared
from modules.core.errors import UserInputError
from modules.extensions.script_args import ScriptArgs, argument_error
from modules.processing import Processed, fix_seed, process_images

RE_RANGE = re.compile(r"^\s*([+-]?\d+)\s*-\s*([+-]?\d+)(?:\s*\(([+-]?\d+)\s*\))?\s*$")
RE_RANGE_COUNT = re.compile(r"^\s*([+-]?\d+)\s*-\s*([+-]?\d+)\s*\[(\d+)\s*\]\s*$")
_FLOAT = r"([+-]?\d+(?:\.\d*)?)"
RE_RANGE_FLOAT = re.compile(rf"^\s*{_FLOAT}\s*-\s*{_FLOAT}(?:\s*\(\s*{_FLOAT}\s*\))?\s*$")
RE_RANGE_FLOAT_COUNT = re.compile(r"^\s*([+-]?\d+(?:\.\d*)?)\s*-\s*([+-]?\d+(?:\.\d*)?)\s*\[(\d+)\s*\]\s*$")


@dataclass
class Axis:
    """One entry of A1111 v1.10.1's axis list. ``apply`` None: an axis Easel cannot sweep (its reason says why);
    choosing it is a 422 naming the script argument, never a silently wrong grid."""

    label: str
    kind: type  # int, float or str
    apply: Callable[[Any, Any, list[Any]], None] | None
    tab: str | None = None  # "txt2img" / "img2img": only on that tab's list (A1111's AxisOptionTxt2Img/Img2Img)
    format_label: Callable[[Axis, Any], str] | None = None
    choices: Callable[[], list[str]] | None = None
    prepare: Callable[[list[str]], list[Any]] | None = None
    reason: str = ""

    def label_for(self, value: Any) -> str:
        if self.format_label is not None:
            return self.format_label(self, value)
        if self.kind is str:
            return str(value)
        return f"{self.label}: {value}"


def _set(field: str) -> Callable[[Any, Any, list[Any]], None]:
    def apply(p: Any, value: Any, values: list[Any]) -> None:
        setattr(p, field, value)
    return apply


def _override(key: str) -> Callable[[Any, Any, list[Any]], None]:
    def apply(p: Any, value: Any, values: list[Any]) -> None:
        p.override_settings = {**(p.override_settings or {}), key: value}
    return apply


class AxisValueError(UserInputError):
    """A value of an axis Easel cannot apply; names the ``*_values`` argument once :meth:`Script.run` knows it."""

    def __init__(self, message: str) -> None:
        super().__init__("values", message)


def _prompt_sr(p: Any, value: str, values: list[str]) -> None:
    search = values[0]
    if search not in p.prompt and search not in p.negative_prompt:
        raise AxisValueError(f"Prompt S/R did not find {search!r} in the prompt or the negative prompt")
    p.prompt = p.prompt.replace(search, value)
    p.negative_prompt = p.negative_prompt.replace(search, value)


def _prompt_order(p: Any, order: tuple[str, ...], values: list[Any]) -> None:
    tokens = sorted(order, key=lambda token: p.prompt.find(token))
    positions = sorted(p.prompt.find(token) for token in tokens)
    text, offset = p.prompt, 0
    for position, token, replacement in zip(positions, tokens, order, strict=True):
        start = position + offset
        text = text[:start] + replacement + text[start + len(token):]
        offset += len(replacement) - len(token)
    p.prompt = text


def _permutations(values: list[str]) -> list[Any]:
    return list(itertools.permutations(values))


def _size(p: Any, value: str, values: list[Any]) -> None:
    width, _, height = str(value).lower().partition("x")
    try:
        p.width, p.height = int(width), int(height or width)
    except ValueError:
        raise AxisValueError(f"Size {value!r} is not WIDTHxHEIGHT") from None


def _styles(p: Any, value: str, values: list[Any]) -> None:
    p.styles = [*p.styles, *(part.strip() for part in str(value).split(",") if part.strip())]


def _face_restore(p: Any, value: str, values: list[Any]) -> None:
    """A1111's values: a restorer name (CodeFormer, GFPGAN) turns restoration on with it; else true/false."""
    text = str(value).strip().lower()
    models = {"codeformer": "CodeFormer", "gfpgan": "GFPGAN"}
    if text in models:
        p.restore_faces = True
        _override("face_restoration_model")(p, models[text], values)
    else:
        p.restore_faces = text in ("true", "yes", "y", "1")


def _format_order(axis: Axis, value: Any) -> str:
    return ", ".join(value)


def _format_plain(axis: Axis, value: Any) -> str:
    return f"{axis.label}: {value}"


def _format_value(axis: Axis, value: Any) -> str:
    return str(value)


def _style_names() -> list[str]:
    store = shared.prompt_styles
    return list(store.names()) if store is not None else []


def _unsupported(label: str, kind: type, reason: str, tab: str | None = None) -> Axis:
    return Axis(label, kind, None, tab=tab, reason=reason)


_K_DIFFUSION = "a k-diffusion sampler setting; Easel samples with diffusers schedulers"
_SCHEDULE = "a k-diffusion sigma schedule setting; Easel's schedules are diffusers schedulers"

# A1111 v1.10.1's axis_options, in its order: an API client's integer axis type indexes the list of its tab
# (txt2img drops the img2img-only entries and the other way round), so the order is the contract.
AXES: list[Axis] = [
    Axis("Nothing", str, lambda p, v, vs: None, format_label=lambda axis, v: ""),
    Axis("Seed", int, _set("seed")),
    Axis("Var. seed", int, _set("subseed")),
    Axis("Var. strength", float, _set("subseed_strength")),
    Axis("Steps", int, _set("steps")),
    Axis("Hires steps", int, _set("hr_second_pass_steps"), tab="txt2img"),
    Axis("CFG Scale", float, _set("cfg_scale")),
    Axis("Image CFG Scale", float, _set("image_cfg_scale"), tab="img2img"),
    Axis("Prompt S/R", str, _prompt_sr, format_label=_format_value),
    Axis("Prompt order", str, _prompt_order, format_label=_format_order, prepare=_permutations),
    Axis("Sampler", str, _set("sampler_name"), tab="txt2img", format_label=_format_value),
    Axis("Hires sampler", str, _set("hr_sampler_name"), tab="txt2img"),
    Axis("Sampler", str, _set("sampler_name"), tab="img2img", format_label=_format_value),
    Axis("Checkpoint name", str, _override("sd_model_checkpoint"), format_label=_format_value),
    _unsupported("Negative Guidance minimum sigma", float, _K_DIFFUSION),
    _unsupported("Sigma Churn", float, _K_DIFFUSION),
    _unsupported("Sigma min", float, _K_DIFFUSION),
    _unsupported("Sigma max", float, _K_DIFFUSION),
    _unsupported("Sigma noise", float, _K_DIFFUSION),
    Axis("Schedule type", str, _set("scheduler")),
    _unsupported("Schedule min sigma", float, _SCHEDULE),
    _unsupported("Schedule max sigma", float, _SCHEDULE),
    _unsupported("Schedule rho", float, _SCHEDULE),
    _unsupported("Beta schedule alpha", float, _SCHEDULE),
    _unsupported("Beta schedule beta", float, _SCHEDULE),
    Axis("Eta", float, _set("eta")),
    Axis("Clip skip", int, _override("CLIP_stop_at_last_layers")),
    Axis("Denoising", float, _set("denoising_strength")),
    Axis("Initial noise multiplier", float, _set("initial_noise_multiplier")),
    _unsupported("Extra noise", float, "img2img extra noise is not implemented by Easel"),
    Axis("Hires upscaler", str, _set("hr_upscaler"), tab="txt2img"),
    _unsupported("Cond. Image Mask Weight", float, "inpainting conditioning mask weight is not implemented by Easel",
                 tab="img2img"),
    Axis("VAE", str, _override("sd_vae"), format_label=_format_plain),
    Axis("Styles", str, _styles, format_label=_format_plain, choices=_style_names),
    _unsupported("UniPC Order", int, "Easel's UniPC is diffusers' UniPCMultistepScheduler with its own order"),
    Axis("Face restore", str, _face_restore, format_label=_format_value),
    Axis("Token merging ratio", float, _override("token_merging_ratio")),
    _unsupported("Token merging ratio high-res", float, "Easel applies one token merging ratio to both passes"),
    _unsupported("Always discard next-to-last sigma", str, _K_DIFFUSION),
    _unsupported("SGM noise multiplier", str, _K_DIFFUSION),
    _unsupported("Refiner checkpoint", str, "the A1111 refiner switch is not implemented by Easel"),
    _unsupported("Refiner switch at", float, "the A1111 refiner switch is not implemented by Easel"),
    Axis("RNG source", str, _override("randn_source"), format_label=_format_plain),
    _unsupported("FP8 mode", str, "FP8 weight storage is not an Easel option (see the quantization option)"),
    Axis("Size", str, _size, format_label=_format_plain),
]


def axes_for(is_img2img: bool) -> list[Axis]:
    """The axis list of one tab, indexed as A1111 indexes it."""
    tab = "img2img" if is_img2img else "txt2img"
    return [axis for axis in AXES if axis.tab in (None, tab)]


def find_axis(value: Any, is_img2img: bool = False, argument: str = "x_type") -> Axis:
    """The axis an API client means: A1111's integer index for the tab, or the label. Raises a 422 naming
    ``argument`` for an unknown one, or one Easel cannot sweep."""
    axes = axes_for(is_img2img)
    tab = "img2img" if is_img2img else "txt2img"
    found: Axis | None = None
    if value is None:
        found = axes[0]
    elif isinstance(value, int) and not isinstance(value, bool):
        found = axes[value] if 0 <= value < len(axes) else None
    elif isinstance(value, str) and value.strip().isdigit():
        return find_axis(int(value.strip()), is_img2img, argument)
    elif isinstance(value, str):
        found = next((axis for axis in axes if axis.label.lower() == value.strip().lower()), None)
        if found is None and any(axis.label.lower() == value.strip().lower() for axis in AXES):
            raise UserInputError(argument, f"X/Y/Z plot axis {value!r} exists only on the other tab, not {tab}")
    if found is None:
        raise UserInputError(argument, f"X/Y/Z plot: unknown axis type {value!r} for {tab}; known: 0-{len(axes) - 1}"
                                       f" or a label ({', '.join(axis.label for axis in axes if axis.apply)})")
    if found.apply is None:
        raise UserInputError(argument, f"X/Y/Z plot axis {found.label!r} ({tab} type "
                                       f"{axes.index(found)}) is not supported by Easel: {found.reason}")
    return found


def _split_csv(text: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    return [item.strip() for row in rows for item in row if item.strip()]


def _check_count(count: int) -> None:
    if count > MAX_AXIS_VALUES:
        raise ValueError(f"{count} values on one axis; at most {MAX_AXIS_VALUES}")


def _int_values(items: list[str]) -> list[int]:
    result: list[int] = []
    for item in items:
        counted = RE_RANGE_COUNT.match(item)
        ranged = RE_RANGE.match(item)
        if counted:
            start, end, count = int(counted[1]), int(counted[2]), int(counted[3])
            _check_count(len(result) + count)
            result.extend(round(start + (end - start) * i / max(1, count - 1)) for i in range(count))
        elif ranged:
            start, end = int(ranged[1]), int(ranged[2])
            step = int(ranged[3]) if ranged[3] else (1 if end >= start else -1)
            values = range(start, end + (1 if step > 0 else -1), step)
            _check_count(len(result) + len(values))
            result.extend(values)
        else:
            result.append(int(float(item)))
    return result


def _float_values(items: list[str]) -> list[float]:
    result: list[float] = []
    for item in items:
        counted = RE_RANGE_FLOAT_COUNT.match(item)
        ranged = RE_RANGE_FLOAT.match(item)
        if counted:
            start, end, count = float(counted[1]), float(counted[2]), int(counted[3])
            _check_count(len(result) + count)
            result.extend(round(start + (end - start) * i / max(1, count - 1), 6) for i in range(count))
        elif ranged and "-" in item.strip()[1:]:
            start, end = float(ranged[1]), float(ranged[2])
            step = float(ranged[3]) if ranged[3] else (1.0 if end >= start else -1.0)
            if step == 0 or (end - start) / step < 0:
                raise ValueError(f"range {item!r} never reaches its end with step {step:g}")
            _check_count(len(result) + int((end - start) / step) + 1)
            value = start
            while (step > 0 and value <= end + 1e-9) or (step < 0 and value >= end - 1e-9):
                result.append(round(value, 6))
                value += step
        else:
            result.append(float(item))
    return result


def parse_values(axis: Axis, text: str, dropdown: list[Any] | None = None, argument: str = "x_values") -> list[Any]:
    """The values of one axis: the dropdown's list where the axis has choices and one was sent, else the text.
    Text that is not a number for a numeric axis is a 422 naming ``argument``."""
    if axis.label == "Nothing":
        return [None]
    items = [str(item) for item in dropdown] if axis.choices is not None and dropdown else _split_csv(text or "")
    if not items:
        raise UserInputError(argument, f"X/Y/Z plot: no values for axis {axis.label!r}")
    try:
        if axis.kind is int:
            values: list[Any] = _int_values(items)
        elif axis.kind is float:
            values = _float_values(items)
        else:
            values = items
    except ValueError:
        kind = "integers" if axis.kind is int else "numbers"
        raise UserInputError(argument, f"X/Y/Z plot axis {axis.label!r} takes {kind} or ranges such as 1-5, "
                                       f"1-10 (+2), 1-10 [5]; got {text!r}") from None
    return axis.prepare(values) if axis.prepare is not None else values


MAX_VALUES_CHARS = 100_000
DropdownValues = list[str | int | float] | None


class XYZArgs(ScriptArgs):
    """Axis types are an index into :data:`AXES` or an axis name; values are checked by :meth:`Script.check_args`."""

    x_type: int | str = 1
    x_values: str = Field("", max_length=MAX_VALUES_CHARS)
    x_values_dropdown: DropdownValues = None
    y_type: int | str = 0
    y_values: str = Field("", max_length=MAX_VALUES_CHARS)
    y_values_dropdown: DropdownValues = None
    z_type: int | str = 0
    z_values: str = Field("", max_length=MAX_VALUES_CHARS)
    z_values_dropdown: DropdownValues = None
    draw_legend: bool = True
    include_lone_images: bool = False
    include_sub_grids: bool = False
    no_fixed_seeds: bool = False
    vary_seeds_x: bool = False
    vary_seeds_y: bool = False
    vary_seeds_z: bool = False
    margin_size: int = Field(0, ge=0, le=500)
    csv_mode: bool = False


AXIS_NAMES = ("x", "y", "z")
MAX_AXIS_VALUES = 100_000
"""Parsing stops here even before --max-job-images is compared ("1-999999999" must not build a list first)."""


def axes_and_values(types: list[Any], texts: list[str], dropdowns: list[Any], is_img2img: bool
                    ) -> tuple[list[Axis], list[list[Any]]]:
    """Find every axis and parse its values; a 422 naming the type or values argument that is wrong."""
    axes: list[Axis] = []
    values: list[list[Any]] = []
    for index, (kind, text, dropdown) in enumerate(zip(types, texts, dropdowns, strict=True)):
        name = AXIS_NAMES[index]
        try:
            axis = find_axis(kind, is_img2img)
        except UserInputError as exc:
            raise argument_error("script_args", 3 * index, f"{name}_type", exc.reason) from None
        try:
            parsed = parse_values(axis, text, dropdown)
        except UserInputError as exc:
            raise argument_error("script_args", 3 * index + 1, f"{name}_values", exc.reason) from None
        except (ValueError, OverflowError) as exc:
            raise argument_error("script_args", 3 * index + 1, f"{name}_values", str(exc)) from None
        axes.append(axis)
        values.append(parsed)
    return axes, values


def check_axis_values(axis: Axis, values: list[Any], request: Any, limits: Any, index: int) -> None:
    """Values that would fail the job later: Prompt S/R text absent from the prompt, steps, sizes, seeds."""
    field, name = 3 * index + 1, f"{AXIS_NAMES[index]}_values"
    if axis.label == "Prompt S/R" and values:
        search = str(values[0])
        if search not in request.prompt and search not in request.negative_prompt:
            raise argument_error("script_args", field, name, f"Prompt S/R did not find {search!r} in the prompt "
                                                             "or the negative prompt")
    for value in values:
        try:
            if axis.label == "Steps":
                if value < 1:
                    raise UserInputError("steps", f"{value} steps; allowed: 1..{limits.max_steps}")
                limits.check_steps("steps", value)
            elif axis.label in ("Seed", "Var. seed") and not -1 <= value <= 2**32 - 1:
                raise UserInputError("seed", f"{value} is out of range; allowed: -1 (random) or 0..4294967295")
            elif axis.label in ("CFG Scale",) and not 0 <= value <= 100:
                raise UserInputError("cfg_scale", f"{value} is out of range; allowed: 0..100")
            elif axis.label in ("Var. strength", "Denoising") and not 0 <= value <= 1:
                raise UserInputError(axis.label, f"{value} is out of range; allowed: 0..1")
            elif axis.label == "Clip skip" and not 1 <= value <= 12:
                raise UserInputError("clip_skip", f"{value} is out of range; allowed: 1..12")
            elif axis.label == "Size":
                probe = copy(request)
                _size(probe, value, values)
                if not (8 <= probe.width <= 4096 and 8 <= probe.height <= 4096):
                    raise UserInputError("size", f"{value}: each side must be 8..4096")
                limits.check_output_size("size", probe.width, probe.height)
        except UserInputError as exc:
            raise argument_error("script_args", field, name, exc.reason) from None
        except ValueError as exc:
            raise argument_error("script_args", field, name, f"{value!r}: {exc}") from None


class Script(scripts.Script):
    api_args = XYZArgs

    def title(self) -> str:
        return "X/Y/Z plot"

    def check_args(self, args: Any, request: Any, limits: Any, init_sizes: list[tuple[int, int]]) -> None:
        dropdowns = [None if args.csv_mode else args.x_values_dropdown,
                     None if args.csv_mode else args.y_values_dropdown,
                     None if args.csv_mode else args.z_values_dropdown]
        axes, values = axes_and_values([args.x_type, args.y_type, args.z_type],
                                       [args.x_values, args.y_values, args.z_values], dropdowns,
                                       bool(request.is_img2img))
        for index, (axis, axis_values) in enumerate(zip(axes, values, strict=True)):
            check_axis_values(axis, axis_values, request, limits, index)
        cells = len(values[0]) * len(values[1]) * len(values[2])
        limits.check_images("script_args", cells * request.total_images, "images (X/Y/Z grid cells x batch)")

    def ui(self, is_img2img: bool) -> list[Any]:
        # A1111's full list for the tab, so that /sdapi/v1/script-info's choices index the axes as A1111 numbers
        # them (clients compute axis types from it); the dropdown hands run() the label. An axis Easel cannot sweep
        # stays listed and answers with the reason.
        names = [axis.label for axis in axes_for(is_img2img)]
        with gr.Row():
            x_type = gr.Dropdown(label="X type", choices=names, value=names[1], type="value")
            x_values = gr.Textbox(label="X values", lines=1)
            x_values_dropdown = gr.Dropdown(label="X values", multiselect=True, visible=False)
        with gr.Row():
            y_type = gr.Dropdown(label="Y type", choices=names, value=names[0], type="value")
            y_values = gr.Textbox(label="Y values", lines=1)
            y_values_dropdown = gr.Dropdown(label="Y values", multiselect=True, visible=False)
        with gr.Row():
            z_type = gr.Dropdown(label="Z type", choices=names, value=names[0], type="value")
            z_values = gr.Textbox(label="Z values", lines=1)
            z_values_dropdown = gr.Dropdown(label="Z values", multiselect=True, visible=False)
        with gr.Row():
            draw_legend = gr.Checkbox(label="Draw legend", value=True)
            include_lone_images = gr.Checkbox(label="Include Sub Images", value=False)
            include_sub_grids = gr.Checkbox(label="Include Sub Grids", value=False)
            no_fixed_seeds = gr.Checkbox(label="Keep -1 for seeds", value=False)
        with gr.Row():
            vary_seeds_x = gr.Checkbox(label="Vary seeds for X", value=False)
            vary_seeds_y = gr.Checkbox(label="Vary seeds for Y", value=False)
            vary_seeds_z = gr.Checkbox(label="Vary seeds for Z", value=False)
            margin_size = gr.Slider(label="Grid margins (px)", minimum=0, maximum=500, value=0, step=2)
            csv_mode = gr.Checkbox(label="Use text inputs instead of dropdowns", value=False)
        return [x_type, x_values, x_values_dropdown, y_type, y_values, y_values_dropdown, z_type, z_values,
                z_values_dropdown, draw_legend, include_lone_images, include_sub_grids, no_fixed_seeds,
                vary_seeds_x, vary_seeds_y, vary_seeds_z, margin_size, csv_mode]

    def run(self, p: Any, x_type: Any = 1, x_values: str = "", x_values_dropdown: Any = None, y_type: Any = 0,
            y_values: str = "", y_values_dropdown: Any = None, z_type: Any = 0, z_values: str = "",
            z_values_dropdown: Any = None, draw_legend: bool = True, include_lone_images: bool = False,
            include_sub_grids: bool = False, no_fixed_seeds: bool = False, vary_seeds_x: bool = False,
            vary_seeds_y: bool = False, vary_seeds_z: bool = False, margin_size: int = 0,
            csv_mode: bool = False) -> Any:
        if not no_fixed_seeds:
            fix_seed(p)
        texts = [x_values, y_values, z_values]
        dropdowns = [None if csv_mode else x_values_dropdown, None if csv_mode else y_values_dropdown,
                     None if csv_mode else z_values_dropdown]
        axes, values = axes_and_values([x_type, y_type, z_type], texts, dropdowns, p.is_img2img)
        xs, ys, zs = values
        vary = (vary_seeds_x, vary_seeds_y, vary_seeds_z)
        shared.state.job_count = len(xs) * len(ys) * len(zs) * p.n_iter
        cells: list[Any] = []
        cell_infos: list[str] = []
        lone_images: list[Any] = []
        lone_infos: list[str] = []
        first: Any = None
        for iz, z in enumerate(zs):
            for iy, y in enumerate(ys):
                for ix, x in enumerate(xs):
                    if shared.state.interrupted:
                        break
                    pc = copy(p)
                    pc.extra_generation_params = dict(p.extra_generation_params)
                    pc.override_settings = dict(p.override_settings or {})
                    pc.styles = list(p.styles)
                    for index, (axis, value, axis_values) in enumerate(zip(axes, (x, y, z), values, strict=True)):
                        assert axis.apply is not None  # find_axis refused the others
                        try:
                            axis.apply(pc, value, axis_values)
                        except (AxisValueError, ValueError) as exc:  # a user error in the values: a 422
                            reason = exc.reason if isinstance(exc, AxisValueError) else str(exc)
                            raise argument_error("script_args", 3 * index + 1, f"{AXIS_NAMES[index]}_values",
                                                 reason) from None
                        if vary[index] and not no_fixed_seeds:
                            pc.seed = pc.seed + (ix, iy, iz)[index]
                    processed = process_images(pc)
                    first = first or processed
                    if processed.images:
                        cells.append(processed.images[0])
                        cell_infos.append(processed.infotexts[0] if processed.infotexts else "")
                        lone_images.extend(processed.images)
                        lone_infos.extend(processed.infotexts)
        if first is None or len(cells) != len(xs) * len(ys) * len(zs):
            return first or Processed(p, [])
        grids, grid_infos = self._grids(cells, cell_infos, axes, xs, ys, zs, draw_legend, int(margin_size))
        if len(zs) > 1 and not include_sub_grids:
            grids, grid_infos = grids[:1], grid_infos[:1]
        result_images = [*grids, *(lone_images if include_lone_images else [])]
        result_infos = [*grid_infos, *(lone_infos if include_lone_images else [])]
        if shared.opts.grid_save and not p.do_not_save_grid:
            images.save_image(grids[0], p.outpath_grids, "xyz_grid", info=grid_infos[0], grid=True, p=p)
        return Processed(p, result_images, first.seed, grid_infos[0], all_prompts=first.all_prompts,
                         all_seeds=first.all_seeds, infotexts=result_infos, index_of_first_image=len(grids))

    @staticmethod
    def _grids(cells: list[Any], infos: list[str], axes: list[Axis], xs: list[Any], ys: list[Any],
               zs: list[Any], draw_legend: bool, margin: int) -> tuple[list[Any], list[str]]:
        per_z = len(xs) * len(ys)
        x_labels = [axes[0].label_for(x) for x in xs]
        y_labels = [axes[1].label_for(y) for y in ys]
        sub_grids = []
        for iz in range(len(zs)):
            chunk = cells[iz * per_z:(iz + 1) * per_z]
            if draw_legend:
                sub_grids.append(images.labelled_grid(chunk, x_labels, y_labels, margin))
            else:
                sub_grids.append(images.image_grid(chunk, rows=len(ys)))
        sub_infos = [infos[iz * per_z] for iz in range(len(zs))]
        if len(zs) == 1:
            return sub_grids, sub_infos
        z_labels = [axes[2].label_for(z) for z in zs]
        width = max(grid.width for grid in sub_grids)
        height = max(grid.height for grid in sub_grids)
        row = images.image_grid([grid.resize((width, height)) for grid in sub_grids], rows=1)
        main = images.draw_grid_annotations(row, width, height, z_labels, [], margin) if draw_legend else row
        return [main, *sub_grids], [infos[0], *sub_infos]
