"""The UI's form logic without gradio: named values -> request models, infotext paste, option widgets.

Kept free of gradio imports so the mapping rules (the part users notice when they are wrong: a pasted seed in
the wrong box, a setting saved under the wrong key) are unit-tested in milliseconds. The tabs hand these
functions ``{field name: value}`` dicts built from *named* components, never positional lists.
"""

from __future__ import annotations

import base64
import html
import io
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image
from pydantic import ValidationError

from modules.core.errors import UserInputError
from modules.processing.extras import NONE_UPSCALER, ExtrasSingleImageParams
from modules.processing.infotext import infotext_to_params, parse_infotext
from modules.processing.params import PARAMS_BY_KIND, GenerationParams

INT_FIELDS = frozenset({"seed", "subseed", "steps", "batch_size", "n_iter", "width", "height", "hr_second_pass_steps",
                        "hr_resize_x", "hr_resize_y", "mask_blur", "inpaint_full_res_padding", "clip_skip"})
"""Fields that gradio hands over as floats (Number/Slider) but the request model wants as ints."""

UI_ONLY_KEYS = frozenset({"override_settings_text", "script_name", "img2img_mode"})

WIDTH_HEIGHT_PRESETS: tuple[tuple[int, int], ...] = ((512, 512), (768, 512), (512, 768), (768, 768), (1024, 1024),
                                                     (1216, 832), (832, 1216))


def parse_override_text(text: str | None) -> dict[str, Any]:
    """The tab's "Override settings" box: a JSON object (what a paste puts there); empty means none."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        message = f'must be a JSON object such as {{"eta_ddim": 0.5}} ({exc})'
        raise UserInputError("override_settings", message) from exc
    if not isinstance(value, dict):
        raise UserInputError("override_settings", "must be a JSON object of option key -> value")
    return value


def clean_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Normalise widget values: floats of integer fields -> int, blank optional strings -> None."""
    cleaned: dict[str, Any] = {}
    for name, value in values.items():
        if name in INT_FIELDS and isinstance(value, float):
            value = int(round(value))
        if name in ("sampler_name", "scheduler", "hr_upscaler", "hr_sampler_name") and value in ("", None):
            value = None
        cleaned[name] = value
    return cleaned


def build_params(kind: str, values: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None) -> GenerationParams:
    """Build the request model of ``kind`` from ``{field name: widget value}``.

    UI conventions: ``clip_skip`` 0 means "use the setting" (the quick-settings bar); txt2img sends
    ``denoising_strength`` only with hires fix on (A1111 does the same); ``override_settings_text`` is the
    JSON override box. Validation errors are raised as :class:`UserInputError` naming the field.
    """
    if kind not in PARAMS_BY_KIND:
        raise UserInputError("kind", f"unknown generation kind {kind!r}; allowed: {', '.join(PARAMS_BY_KIND)}")
    data = clean_values(values)
    overrides = parse_override_text(data.pop("override_settings_text", None))
    for key in UI_ONLY_KEYS:
        data.pop(key, None)
    if data.get("clip_skip") in (0, None):
        data.pop("clip_skip", None)
    if kind == "txt2img" and not data.get("enable_hr"):
        data.pop("denoising_strength", None)
    if data.get("seed") is None:
        data["seed"] = -1
    data.update(extra or {})
    if overrides:
        data["override_settings"] = {**overrides, **data.get("override_settings", {})}
    try:
        return PARAMS_BY_KIND[kind].model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first.get("loc", ())) or kind
        raise UserInputError(name, first.get("msg", "invalid value")) from exc


@dataclass
class PasteResult:
    """What a paste changes: request fields present in the tab, quick settings, and leftover overrides."""

    fields: dict[str, Any] = field(default_factory=dict)
    quicksettings: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)


def paste_infotext(text: str, *, tab_fields: set[str], quicksettings: list[str],
                   current_options: Mapping[str, Any] | None = None,
                   skip_keys: tuple[str, ...] = ()) -> PasteResult:
    """A1111's paste: infotext -> the tab's fields, settings shown in the quick-settings bar, other overrides.

    Fields the tab does not show are dropped (an img2img-only field pasted into txt2img); ``mask_blur`` goes to
    its own box; sizes, seeds and steps become ints. Overrides whose key is a quick setting go to the bar (the
    user sees the model change there, as in A1111); the rest go to the tab's override box.
    """
    parsed = parse_infotext(text)
    request, overrides = infotext_to_params(parsed, current_options=current_options, skip_keys=skip_keys)
    result = PasteResult()
    for name, value in request.items():
        if name in tab_fields:
            result.fields[name] = value
    if "Clip skip" in parsed and "clip_skip" in tab_fields and "CLIP_stop_at_last_layers" not in quicksettings:
        result.fields["clip_skip"] = parsed["Clip skip"]
    for key, value in overrides.items():
        if key in quicksettings:
            result.quicksettings[key] = value
        else:
            result.overrides[key] = value
    return result


# ------------------------------------------------------------------------------------------- extras

EXTRAS_INT_FIELDS = frozenset({"resize_mode", "upscaling_resize_w", "upscaling_resize_h"})


def build_extras_params(values: Mapping[str, Any], image: str) -> ExtrasSingleImageParams:
    """The extra-single-image request (the API's model) for one base64 ``image`` from the Extras tab's values.

    Sliders hand over floats, so sizes and the resize mode become ints; an empty upscaler box means "None".
    Fields the tab does not send keep the request model's A1111 defaults (face restoration off).
    """
    data: dict[str, Any] = {}
    for name, value in values.items():
        if name not in ExtrasSingleImageParams.model_fields or name == "image":
            continue
        if name in EXTRAS_INT_FIELDS and isinstance(value, float):
            value = int(round(value))
        if name in ("upscaler_1", "upscaler_2") and value in ("", None):
            value = NONE_UPSCALER
        data[name] = value
    try:
        return ExtrasSingleImageParams.model_validate({**data, "image": image})
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(part) for part in first.get("loc", ())) or "extras"
        raise UserInputError(name, first.get("msg", "invalid value")) from exc


def extras_info_html(html_info: str, warnings: list[str]) -> str:
    """``html_info`` without the paragraphs that only repeat a note the tab shows on its own warning line.

    The extras job puts each note (a face model that is not installed, no face found) both in ``warnings`` and
    as a ``<p>`` of ``html_info`` (A1111's response shape); the tab lists notes once, where they stand out.
    """
    repeated = {f"<p>{html.escape(str(note))}</p>" for note in warnings}
    kept = [line for line in html_info.splitlines() if line.strip() not in repeated]
    return "\n".join(kept).strip()


# ------------------------------------------------------------------------------------------- images


def image_to_base64(image: Image.Image) -> str:
    """PNG base64 (no data: prefix), the form the request models take for init images and masks."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def mask_from_layers(layers: list[Image.Image | None], size: tuple[int, int], *, invert: bool = False) -> Image.Image:
    """White where the user painted on any editor layer (alpha > 0), black elsewhere; an "L" image of ``size``."""
    mask = Image.new("L", size, 0)
    for layer in layers:
        if layer is None:
            continue
        rgba = layer.convert("RGBA")
        if rgba.size != size:
            rgba = rgba.resize(size)
        alpha = rgba.getchannel("A").point(lambda v: 255 if v > 0 else 0)
        mask.paste(255, (0, 0), alpha)
    if invert:
        mask = mask.point(lambda v: 255 - v)
    return mask


# ------------------------------------------------------------------------------------------- settings page


@dataclass(frozen=True)
class OptionWidget:
    """Which widget edits one option, decided from its pydantic type and constraints."""

    key: str
    kind: Literal["checkbox", "dropdown", "multiselect", "slider", "number", "textbox"]
    label: str
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    integer: bool = False
    nullable: bool = False


def _constraints(field_info: Any) -> tuple[float | None, float | None]:
    low = high = None
    for item in field_info.metadata:
        low = getattr(item, "ge", None) if getattr(item, "ge", None) is not None else low
        high = getattr(item, "le", None) if getattr(item, "le", None) is not None else high
    return low, high


def option_widget(key: str, field_info: Any) -> OptionWidget:
    """bool -> Checkbox, Literal -> Dropdown, bounded number -> Slider, number -> Number, list -> multiselect
    (its choices from a ``list[Literal[...]]``), anything else -> Textbox. ``Optional[X]`` is X with an empty value
    meaning None. The label is the field's ``title`` where it declares one, else its key."""
    annotation = field_info.annotation
    args = typing.get_args(annotation)
    nullable = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        nullable = True
        rest = [arg for arg in args if arg is not type(None)]
        annotation = rest[0] if len(rest) == 1 else str
    label = field_info.title or key
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return OptionWidget(key, "checkbox", label, nullable=nullable)
    if origin is Literal:
        return OptionWidget(key, "dropdown", label, choices=typing.get_args(annotation), nullable=nullable)
    if origin in (list, tuple, set):
        item = (typing.get_args(annotation) or (None,))[0]
        choices = typing.get_args(item) if typing.get_origin(item) is Literal else ()
        return OptionWidget(key, "multiselect", label, choices=choices, nullable=nullable)
    if annotation in (int, float):
        low, high = _constraints(field_info)
        integer = annotation is int
        if low is not None and high is not None:
            step = 1.0 if integer else (0.01 if high - low <= 2 else 0.1)
            return OptionWidget(key, "slider", label, minimum=low, maximum=high, step=step, integer=integer,
                                nullable=nullable)
        return OptionWidget(key, "number", label, minimum=low, maximum=high, integer=integer, nullable=nullable)
    return OptionWidget(key, "textbox", label, nullable=nullable)


def option_widgets(options_cls: Any) -> dict[str, list[OptionWidget]]:
    """Every option field's widget, grouped by the section the settings model declares."""
    return {section: [option_widget(key, options_cls.model_fields[key]) for key in keys]
            for section, keys in options_cls.sections().items()}


UNSET_CHOICE_LABEL = "Automatic"
"""The dropdown entry of an optional listed setting that leaves it unset (its value is the empty string)."""


def listed_choices(widget: OptionWidget, listed: list[str], value: Any) -> list[tuple[str, str]]:
    """``(label, value)`` choices for a free-text option whose values the page can list (installed face restorers).

    The current value stays listed even when it is no longer installed, so opening the page never silently
    changes it; an optional setting gets an :data:`UNSET_CHOICE_LABEL` entry that saves None.
    """
    current = [] if value is None or value == "" else [str(value)]
    choices = [(name, name) for name in dict.fromkeys([*listed, *current])]
    return [(UNSET_CHOICE_LABEL, ""), *choices] if widget.nullable else choices


def widget_value_to_option(widget: OptionWidget, value: Any) -> Any:
    """Convert a widget's value back to the option's type (ints from sliders, None from empty text)."""
    if widget.kind in ("slider", "number"):
        if value is None or value == "":
            return None if widget.nullable else value
        return int(round(float(value))) if widget.integer else float(value)
    if widget.kind == "textbox" and widget.nullable and (value is None or value == ""):
        return None
    if widget.kind == "multiselect":
        return list(value or [])
    return value


def option_changes(widgets: Mapping[str, OptionWidget], values: Mapping[str, Any],
                   current: Mapping[str, Any]) -> dict[str, Any]:
    """The ``{key: new value}`` of options whose widget value differs from the current setting."""
    changes: dict[str, Any] = {}
    for key, value in values.items():
        widget = widgets.get(key)
        if widget is None:
            continue
        converted = widget_value_to_option(widget, value)
        if converted != current.get(key):
            changes[key] = converted
    return changes


# ------------------------------------------------------------------------------------------- progress text


def progress_text(*, status: str, position: int | None, step: int = 0, total_steps: int = 0, batch_no: int = 0,
                  batch_count: int = 0, progress: float = 0.0, eta: float | None = None,
                  textinfo: str | None = None) -> str:
    """The one-line status under the progress bar: queue position while waiting, step/ETA while running."""
    if status == "queued":
        if position is None or position <= 0:
            return "Waiting to start…"
        return f"Waiting: {position} job{'s' if position != 1 else ''} ahead in the queue"
    if status == "running":
        parts = []
        if total_steps:
            parts.append(f"Step {step}/{total_steps}")
        if batch_count and batch_count > 1:
            parts.append(f"batch {batch_no + 1}/{batch_count}")
        parts.append(f"{progress * 100:.0f}%")
        if eta is not None:
            parts.append(f"ETA {eta:.1f}s")
        if textinfo and not total_steps:
            parts.append(textinfo)
        return "Generating: " + " · ".join(parts)
    return status
