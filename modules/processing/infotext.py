"""The A1111 infotext ("generation parameters" text): building it, parsing it back, and mapping it onto a request.

The infotext is the one format every Stable Diffusion tool reads and writes (PNG ``parameters`` chunk, JPEG/WebP
EXIF UserComment, the API's ``info`` field and ``infotext`` request field, the UI's paste button). Easel writes
it exactly as A1111 does so that images made here paste into A1111, SD.Next, ComfyUI loaders and civitai, and
parses it with A1111's rules so that their images paste here::

    <prompt, may span lines>
    Negative prompt: <negative, may span lines>
    Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 123, Size: 512x512, ...

No library implements this format, so it is written by hand here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any

A1111_KEY_ORDER: list[str] = [
    "Steps",
    "Sampler",
    "Schedule type",
    "CFG scale",
    "Image CFG scale",
    "Seed",
    "Face restoration",
    "Size",
    "Model hash",
    "Model",
    "FP8 weight",
    "Cache FP16 weight for LoRA",
    "VAE hash",
    "VAE",
    "Variation seed",
    "Variation seed strength",
    "Seed resize from",
    "Denoising strength",
    "Conditional mask weight",
    "Clip skip",
    "ENSD",
    "Token merging ratio",
    "Token merging ratio hr",
    "Init image hash",
    "RNG",
    "Tiling",
    "Hires upscale",
    "Hires steps",
    "Hires upscaler",
    "Hires resize",
    "Hires sampler",
    "Hires schedule type",
    "Hires checkpoint",
    "Hires prompt",
    "Hires negative prompt",
    "Lora hashes",
    "TI hashes",
    "Emphasis",
    "Version",
    "User",
]
"""The order in which A1111's ``create_infotext`` writes its core keys; extension keys go before ``Version``."""

NEGATIVE_PROMPT_PREFIX = "Negative prompt:"

PARSE_DEFAULTS: dict[str, object] = {
    "Clip skip": 1,
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": 0,
    "Schedule min sigma": 0,
    "Schedule rho": 0,
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
    "Cache FP16 weight for LoRA": False,
    "Refiner switch by sampling steps": False,
}
"""Keys A1111 fills in when an infotext lacks them: the value that was in effect before the key was written.

Besides these, ``Emphasis: Original`` is added when the prompt or negative uses attention brackets, and a
legacy sampler name such as ``DPM++ 2M Karras`` is split into ``Sampler`` + ``Schedule type``.
"""

SCHEDULE_SUFFIXES = ("Karras", "Exponential", "Polyexponential", "SGM Uniform", "KL Optimal", "Align Your Steps")

STRING_KEYS: frozenset[str] = frozenset(
    {
        "Prompt",
        "Negative prompt",
        "Model",
        "Model hash",
        "VAE",
        "VAE hash",
        "Version",
        "Sampler",
        "Schedule type",
        "Hires sampler",
        "Hires schedule type",
        "Hires checkpoint",
        "Hires prompt",
        "Hires negative prompt",
        "Hires upscaler",
        "Lora hashes",
        "TI hashes",
        "Init image hash",
        "User",
        "Styles",
        "Face restoration",
    }
)
"""Keys whose values stay strings even when they look like numbers (a hash of only digits, a model named "1")."""

_KEY = r"[A-Za-z0-9_][\w \-/().+]*?"
_VALUE = r'"(?:\\.|[^\\"])*"|[^,]*'
RE_PARAM = re.compile(rf"\s*(?P<key>{_KEY})\s*:\s*(?P<value>{_VALUE})(?:,|$)")
RE_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
RE_INT = re.compile(r"^-?(?:0|[1-9]\d*)$")
RE_FLOAT = re.compile(r"^-?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?[eE][-+]?\d+)$")
RE_ATTENTION = re.compile(r"(?<!\\)[(\[]")


def quote(value: object) -> str:
    """Return ``value`` as text, JSON-quoted when it holds a separator (``,``, ``:`` or a newline)."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(value: str) -> str:
    """Undo :func:`quote`; text that is not a valid JSON string is returned as it is."""
    if len(value) < 2 or not value.startswith('"') or not value.endswith('"'):
        return value
    try:
        result = json.loads(value)
    except ValueError:
        return value
    return result if isinstance(result, str) else value


def build_infotext(prompt: str, negative_prompt: str, params: Mapping[str, object]) -> str:
    """Write the A1111 infotext: prompt lines, an optional ``Negative prompt:`` line, then the parameter line.

    ``params`` is written in its own order (callers pass A1111's order, see :data:`A1111_KEY_ORDER`); keys whose
    value is None are left out, values holding ``,``/``:``/newlines are JSON-quoted.
    """
    pairs = [f"{key}: {quote(value)}" for key, value in params.items() if value is not None]
    parts = [prompt or ""]
    if negative_prompt:
        parts.append(f"\n{NEGATIVE_PROMPT_PREFIX} {negative_prompt}")
    parts.append("\n" + ", ".join(pairs))
    return "".join(parts).strip()


def order_params(params: Mapping[str, object]) -> dict[str, object]:
    """Return ``params`` with A1111's core keys first in A1111 order, others after them, ``Version``/``User`` last."""
    rank = {key: index for index, key in enumerate(A1111_KEY_ORDER)}
    tail = {"Version", "User"}
    core = sorted((k for k in params if k in rank and k not in tail), key=rank.__getitem__)
    extra = [k for k in params if k not in rank]
    last = [k for k in A1111_KEY_ORDER if k in tail and k in params]
    return {key: params[key] for key in [*core, *extra, *last]}


def convert_value(key: str, value: str) -> object:
    """Turn a parameter's text into the int/float/bool A1111 clients expect; names and hashes stay strings."""
    if key in STRING_KEYS or key.endswith(("hash", "hashes")):
        return value
    if RE_INT.match(value):
        return int(value)
    if RE_FLOAT.match(value):
        return float(value)
    if value in ("True", "False"):
        return value == "True"
    return value


def split_param_line(line: str) -> list[tuple[str, str]]:
    """Return the ``(key, unquoted value)`` pairs of a parameter line, in order."""
    return [(m.group("key").strip(), unquote(m.group("value").strip())) for m in RE_PARAM.finditer(line)]


def parse_infotext(text: str) -> dict[str, object]:
    """Parse an infotext with A1111's ``parse_generation_parameters`` rules.

    The last line is the parameter line only when it holds at least three ``key: value`` pairs. Lines before
    ``Negative prompt:`` form ``Prompt``, lines after it ``Negative prompt`` (each line stripped, as A1111 does).
    ``WxH`` values also give ``Key-1`` and ``Key-2``; numbers become int/float, ``True``/``False`` bool, except
    for :data:`STRING_KEYS`; missing keys get :data:`PARSE_DEFAULTS`.
    """
    lines = text.strip().replace("\r\n", "\n").split("\n")
    param_line = lines[-1] if lines else ""
    pairs = split_param_line(param_line)
    if len(pairs) >= 3:
        lines = lines[:-1]
    else:
        pairs = []

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(NEGATIVE_PROMPT_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PROMPT_PREFIX) :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)

    result: dict[str, object] = {}
    for key, value in pairs:
        size = RE_IMAGE_SIZE.match(value)
        result[key] = convert_value(key, value)
        if size:
            result[f"{key}-1"] = int(size.group(1))
            result[f"{key}-2"] = int(size.group(2))
    prompt = "\n".join(prompt_lines)
    negative = "\n".join(negative_lines)
    result["Prompt"] = prompt
    result["Negative prompt"] = negative

    sampler = result.get("Sampler")
    if isinstance(sampler, str) and "Schedule type" not in result:
        for suffix in SCHEDULE_SUFFIXES:
            if sampler.endswith(" " + suffix):
                result["Sampler"] = sampler[: -len(suffix) - 1]
                result["Schedule type"] = suffix
                break
    for key, default in PARSE_DEFAULTS.items():
        result.setdefault(key, default)
    if "Emphasis" not in result and (RE_ATTENTION.search(prompt) or RE_ATTENTION.search(negative)):
        result["Emphasis"] = "Original"
    return result


REQUEST_FIELDS: dict[str, str] = {
    "Prompt": "prompt",
    "Negative prompt": "negative_prompt",
    "Styles": "styles",
    "Steps": "steps",
    "Sampler": "sampler_name",
    "Schedule type": "scheduler",
    "CFG scale": "cfg_scale",
    "Image CFG scale": "image_cfg_scale",
    "Seed": "seed",
    "Size-1": "width",
    "Size-2": "height",
    "Variation seed": "subseed",
    "Variation seed strength": "subseed_strength",
    "Seed resize from-1": "seed_resize_from_w",
    "Seed resize from-2": "seed_resize_from_h",
    "Denoising strength": "denoising_strength",
    "Batch size": "batch_size",
    "Tiling": "tiling",
    "Mask blur": "mask_blur",
    "Hires upscale": "hr_scale",
    "Hires steps": "hr_second_pass_steps",
    "Hires upscaler": "hr_upscaler",
    "Hires resize-1": "hr_resize_x",
    "Hires resize-2": "hr_resize_y",
    "Hires sampler": "hr_sampler_name",
    "Hires schedule type": "hr_scheduler",
    "Hires checkpoint": "hr_checkpoint_name",
    "Hires prompt": "hr_prompt",
    "Hires negative prompt": "hr_negative_prompt",
}
"""Infotext key -> A1111 request field (``StableDiffusionTxt2ImgProcessingAPI`` names)."""

OVERRIDE_SETTINGS: dict[str, str] = {
    "Model hash": "sd_model_checkpoint",
    "Model": "sd_model_checkpoint",
    "VAE": "sd_vae",
    "Clip skip": "CLIP_stop_at_last_layers",
    "ENSD": "eta_noise_seed_delta",
    "RNG": "randn_source",
    "Emphasis": "emphasis",
    "Eta": "eta_ancestral",
    "Eta DDIM": "eta_ddim",
    "Sigma churn": "s_churn",
    "Sigma tmin": "s_tmin",
    "Sigma tmax": "s_tmax",
    "Sigma noise": "s_noise",
    "Schedule rho": "rho",
    "Schedule max sigma": "sigma_max",
    "Schedule min sigma": "sigma_min",
    "UniPC variant": "uni_pc_variant",
    "UniPC skip type": "uni_pc_skip_type",
    "UniPC order": "uni_pc_order",
    "UniPC lower order final": "uni_pc_lower_order_final",
    "Token merging ratio": "token_merging_ratio",
    "Token merging ratio hr": "token_merging_ratio_hr",
    "Pad conds": "pad_cond_uncond",
    "Pad conds v0": "pad_cond_uncond_v0",
    "NGMS": "s_min_uncond",
    "Noise multiplier": "initial_noise_multiplier",
    "Conditional mask weight": "inpainting_mask_weight",
    "VAE Encoder": "sd_vae_encode_method",
    "VAE Decoder": "sd_vae_decode_method",
    "Beta schedule alpha": "beta_dist_alpha",
    "Beta schedule beta": "beta_dist_beta",
    "SGM noise multiplier": "sgm_noise_multiplier",
    "FP8 weight": "fp8_storage",
    "Cache FP16 weight for LoRA": "cache_fp16_weight",
}
"""Infotext key -> option key pasted into ``override_settings`` (A1111's ``OptionInfo(infotext=...)`` labels).

``Model hash`` wins over ``Model`` for ``sd_model_checkpoint``, as in A1111 (the model manager resolves a hash
or a title); ``Model`` is used when no hash was written.
"""

_SAME_AS_FIRST_PASS = {"Use same sampler", "Use same scheduler", "Use same checkpoint"}
_SCHEDULE_ZERO_MEANS_DEFAULT = {"Schedule rho", "Schedule max sigma", "Schedule min sigma"}


def infotext_to_params(
    parsed: Mapping[str, object],
    *,
    current_options: Mapping[str, Any] | None = None,
    skip_keys: Collection[str] = (),
) -> tuple[dict[str, object], dict[str, object]]:
    """Map a :func:`parse_infotext` result onto ``(request_fields, override_settings)``.

    Used by the API's ``infotext`` request field and the UI's paste button. ``Use same ...`` hires values are
    dropped (the request's None means the same thing). With ``current_options``, settings equal to the current
    value, or unknown to this install, are left out of ``override_settings`` (A1111 drops unchanged ones too, so a
    paste does not pin every setting; unknown ones would only pollute the config).
    ``skip_keys`` are infotext keys not to paste (the ``infotext_skip_pasting`` option).
    """
    fields: dict[str, object] = {}
    overrides: dict[str, object] = {}
    for key, value in parsed.items():
        if key in skip_keys or (key.endswith(("-1", "-2")) and key[:-2] in skip_keys):
            continue
        if key in REQUEST_FIELDS:
            if isinstance(value, str) and value in _SAME_AS_FIRST_PASS:
                continue
            field = REQUEST_FIELDS[key]
            if field == "styles":
                value = _as_list(value)
            fields[field] = value
        elif key in OVERRIDE_SETTINGS:
            if key in _SCHEDULE_ZERO_MEANS_DEFAULT and value == 0:
                continue
            if key == "Model" and "Model hash" in parsed:
                continue
            overrides[OVERRIDE_SETTINGS[key]] = value
        elif key == "Face restoration":
            fields["restore_faces"] = True

    hires = ("Hires upscale", "Hires upscaler", "Hires steps")
    if any(key in parsed for key in hires) or parsed.get("Hires resize-1") not in (None, 0):
        fields["enable_hr"] = True

    if current_options is not None:
        overrides = {k: v for k, v in overrides.items() if k in current_options and current_options[k] != v}
    return fields, overrides


def _as_list(value: object) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value]
    text = str(value).strip()
    if text.startswith("["):
        try:
            loaded = json.loads(text)
        except ValueError:
            loaded = None
        if isinstance(loaded, list):
            return [str(item) for item in loaded]
    return [part.strip() for part in text.split(",") if part.strip()]
