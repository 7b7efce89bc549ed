"""A1111's ``modules.infotext_utils`` (formerly ``generation_parameters_copypaste``) for drop-in extensions.

Parsing and quoting are Easel's infotext reader (:mod:`modules.processing.infotext`); ``parse_generation_
parameters`` then runs the ``infotext_pasted`` callbacks, as A1111's does. The "send to" buttons an extension
creates with :func:`create_buttons` / :func:`bind_buttons` are recorded in :data:`registered_param_bindings`
(A1111's list of :class:`ParamBinding`), which the browser UI connects to its tabs.
"""

from __future__ import annotations

import base64
import io
import os
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from modules.extensions import compat
from modules.processing.infotext import parse_infotext, quote, unquote

__all__ = ["ParamBinding", "PasteField", "add_paste_fields", "bind_buttons", "connect_paste_params_buttons",
           "create_buttons", "get_override_settings", "image_from_url_text", "infotext_to_setting_name_mapping",
           "parse_generation_parameters", "paste_fields", "quote", "register_paste_params_button",
           "registered_param_bindings", "reset", "unquote"]

PasteField = namedtuple("PasteField", ["component", "target", "api"], defaults=[None])

paste_fields: dict[str, dict[str, Any]] = {}
registered_param_bindings: list[ParamBinding] = []

# A1111's infotext key -> setting name pairs (what a pasted infotext may override).
infotext_to_setting_name_mapping = [
    ("Clip skip", "CLIP_stop_at_last_layers"), ("Conditional mask weight", "inpainting_mask_weight"),
    ("Model hash", "sd_model_checkpoint"), ("ENSD", "eta_noise_seed_delta"), ("Schedule type", "k_sched_type"),
    ("Schedule max sigma", "sigma_max"), ("Schedule min sigma", "sigma_min"), ("Schedule rho", "rho"),
    ("Noise multiplier", "initial_noise_multiplier"), ("Eta", "eta_ancestral"), ("Eta DDIM", "eta_ddim"),
    ("Sigma churn", "s_churn"), ("Sigma tmin", "s_tmin"), ("Sigma tmax", "s_tmax"), ("Sigma noise", "s_noise"),
    ("Discard penultimate sigma", "always_discard_next_to_last_sigma"), ("UniPC variant", "uni_pc_variant"),
    ("UniPC skip type", "uni_pc_skip_type"), ("UniPC order", "uni_pc_order"),
    ("UniPC lower order final", "uni_pc_lower_order_final"), ("Token merging ratio", "token_merging_ratio"),
    ("Token merging ratio hr", "token_merging_ratio_hr"), ("RNG", "randn_source"), ("NGMS", "s_min_uncond"),
    ("Pad conds", "pad_cond_uncond"), ("VAE", "sd_vae"), ("VAE Encoder", "sd_vae_encode_method"),
    ("VAE Decoder", "sd_vae_decode_method"), ("Tiling", "tiling"), ("Emphasis", "emphasis"),
]


class ParamBinding:
    """A "send parameters to <tab>" button (A1111's class, same constructor)."""

    def __init__(self, paste_button: Any, tabname: str, source_text_component: Any = None,
                 source_image_component: Any = None, source_tabname: str | None = None,
                 override_settings_component: Any = None, paste_field_names: list[str] | None = None) -> None:
        self.paste_button = paste_button
        self.tabname = tabname
        self.source_text_component = source_text_component
        self.source_image_component = source_image_component
        self.source_tabname = source_tabname
        self.override_settings_component = override_settings_component
        self.paste_field_names = paste_field_names or []


def parse_generation_parameters(x: str, skip_fields: list[str] | None = None) -> dict[str, Any]:
    """The parameters of an infotext as A1111 returns them (``Prompt``, ``Negative prompt``, ``Size-1``...), after
    the ``infotext_pasted`` callbacks (which may change them) have run."""
    params: dict[str, Any] = dict(parse_infotext(x or ""))
    for key in skip_fields or []:
        params.pop(key, None)
    try:
        compat.callbacks().call("infotext_pasted", x, params)
    except RuntimeError:
        pass
    return params


def get_override_settings(params: dict[str, Any], *,
                          skip_fields: list[str] | None = None) -> list[tuple[str, str, Any]]:
    """``(infotext key, setting name, value)`` of pasted parameters that differ from the current settings."""
    skip = set(skip_fields or [])
    try:
        options = compat.bound().settings.options.model_dump()
    except RuntimeError:
        options = {}
    found = []
    for key, setting in infotext_to_setting_name_mapping:
        if key in skip or key not in params:
            continue
        value = params[key]
        if options.get(setting) != value:
            found.append((key, setting, value))
    return found


def image_from_url_text(filedata: Any) -> Any:
    """A PIL image from what a Gradio image/gallery sends: a data URL, a path, or a ``{"name"/"path": ...}``."""
    from PIL import Image

    if filedata is None:
        return None
    if isinstance(filedata, list):
        if not filedata:
            return None
        filedata = filedata[0]
    if isinstance(filedata, dict):
        filedata = filedata.get("path") or filedata.get("name") or (filedata.get("image") or {}).get("path")
    if isinstance(filedata, tuple):
        filedata = filedata[0]
    if hasattr(filedata, "path"):
        filedata = filedata.path
    if isinstance(filedata, Image.Image):
        return filedata
    text = str(filedata)
    if text.startswith("data:image/"):
        text = text.split(",", 1)[1]
        return Image.open(io.BytesIO(base64.b64decode(text)))
    if os.path.isfile(text):
        return Image.open(text)
    return Image.open(io.BytesIO(base64.b64decode(text)))


def add_paste_fields(tabname: str, init_img: Any, fields: Any, override_settings_component: Any = None) -> None:
    paste_fields[tabname] = {"init_img": init_img, "fields": fields,
                             "override_settings_component": override_settings_component}


def create_buttons(tabs_list: list[str]) -> dict[str, Any]:
    """A "Send to <tab>" button per tab name (elem_id ``<tab>_tab``, as A1111's)."""
    import gradio as gr

    return {tab: gr.Button(f"Send to {tab}", elem_id=f"{tab}_tab") for tab in tabs_list}


def register_paste_params_button(binding: ParamBinding) -> None:
    registered_param_bindings.append(binding)


def bind_buttons(buttons: dict[str, Any], send_image: Any, send_generate_info: Any) -> None:
    """Legacy A1111 call: register a binding per button (image and infotext sources)."""
    for tabname, button in buttons.items():
        source_text = send_generate_info if not isinstance(send_generate_info, str) else None
        source_tabname = send_generate_info if isinstance(send_generate_info, str) else None
        register_paste_params_button(ParamBinding(button, tabname, source_text_component=source_text,
                                                  source_image_component=send_image, source_tabname=source_tabname))


def connect_paste_params_buttons(connect: Callable[[ParamBinding], None] | None = None) -> None:
    """Hand every registered binding to ``connect`` (the browser UI's wiring of "send to" buttons)."""
    if connect is None:
        return
    for binding in list(registered_param_bindings):
        connect(binding)


def reset() -> None:
    paste_fields.clear()
    registered_param_bindings.clear()
