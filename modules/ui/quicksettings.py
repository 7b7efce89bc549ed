"""The quick-settings bar at the top of the page: checkpoint (with refresh), VAE and clip skip.

Changing a value saves the option at once (A1111 behaviour); the model itself is switched by the next job
on the queue's worker, never by this request handler (one queue, one worker per device).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from modules.core.errors import EaselError
from modules.ui.context import UiContext

log = logging.getLogger(__name__)


@dataclass
class QuickSettings:
    components: dict[str, Any] = field(default_factory=dict)
    status: Any = None
    changed: list[Any] = field(default_factory=list)  # the change events that save an option


def apply_option(ctx: UiContext, key: str, value: Any) -> str:
    """Save one option; returns the status line (errors name the key)."""
    if value is None or value == "":
        return ""
    if key == "CLIP_stop_at_last_layers":
        value = int(value)
    if getattr(ctx.options, key, None) == value:
        return ""
    try:
        ctx.settings.update_options({key: value})
    except EaselError as exc:
        return f"⚠️ {exc.message}"
    if key == "sd_model_checkpoint":
        manager = ctx.services.manager
        loaded = manager.current.info.title if manager is not None and manager.current is not None else None
        return f"Checkpoint set to {value}" + ("" if loaded == value else " (loads with the next generation)")
    return f"{key} = {value}"


def build_quicksettings(ctx: UiContext) -> QuickSettings:
    quick = QuickSettings()
    with gr.Row(elem_id="quicksettings", equal_height=True):
        checkpoint = gr.Dropdown(ctx.checkpoint_titles(), value=ctx.current_checkpoint_title(),
                                 label="Stable Diffusion checkpoint", elem_id="setting_sd_model_checkpoint",
                                 allow_custom_value=True, scale=4)
        refresh = gr.Button("🔄", elem_id="refresh_sd_model_checkpoint", size="sm", scale=0, min_width=40)
        vae = gr.Dropdown(ctx.vae_choices(), value=ctx.options.sd_vae, label="SD VAE", elem_id="setting_sd_vae",
                          allow_custom_value=True, scale=2)
        clip_skip = gr.Slider(1, 12, value=ctx.options.CLIP_stop_at_last_layers, step=1, label="Clip skip",
                              elem_id="setting_CLIP_stop_at_last_layers", scale=2)
    quick.status = gr.Markdown("", elem_id="quicksettings_status")
    quick.components = {"sd_model_checkpoint": checkpoint, "sd_vae": vae, "CLIP_stop_at_last_layers": clip_skip}

    for key, comp in quick.components.items():
        quick.changed.append(comp.change(lambda value, key=key: apply_option(ctx, key, value), comp, quick.status,
                                         show_progress="hidden"))

    def refresh_checkpoints() -> Any:
        return gr.update(choices=ctx.checkpoint_titles(refresh=True), value=ctx.current_checkpoint_title())

    refresh.click(refresh_checkpoints, None, checkpoint, show_progress="hidden")
    return quick


def quicksetting_value(ctx: UiContext, key: str, value: Any) -> Any:
    """A pasted override as the bar's widget wants it: a model hash or name becomes the checkpoint title."""
    if key == "sd_model_checkpoint":
        entry = ctx.services.catalog.find(str(value))
        return entry.title if entry is not None else None
    return value
