"""A1111's ``modules.script_callbacks`` for drop-in extensions (a façade over the bound callback registry).

Each ``on_<point>(callback, *, name=None)`` registers a callback; Easel calls it at that point, isolated (an
exception is logged with the extension's name and the job goes on).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modules.extensions import compat
from modules.extensions.callbacks import (
    AfterCFGCallbackParams,
    BeforeTokenCounterParams,
    CFGDenoisedParams,
    CFGDenoiserParams,
    ImageGridLoopParams,
    ImageSaveParams,
)
from modules.processing.run import ExtraNoise as ExtraNoiseParams

__all__ = ["AfterCFGCallbackParams", "BeforeTokenCounterParams", "CFGDenoisedParams", "CFGDenoiserParams",
           "ExtraNoiseParams", "ImageGridLoopParams", "ImageSaveParams"]

Callback = Callable[..., Any]


def _add(point: str, callback: Callback, name: str | None) -> None:
    compat.callbacks().add(point, callback, name)


def on_app_started(callback: Callback, *, name: str | None = None) -> None:
    """``callback(demo, app)`` once the server is up: how extensions add FastAPI routes."""
    _add("app_started", callback, name)


def on_before_reload(callback: Callback, *, name: str | None = None) -> None:
    _add("before_reload", callback, name)


def on_model_loaded(callback: Callback, *, name: str | None = None) -> None:
    """``callback(sd_model)`` after a checkpoint is loaded (Easel passes the diffusers pipeline)."""
    _add("model_loaded", callback, name)


def on_ui_tabs(callback: Callback, *, name: str | None = None) -> None:
    _add("ui_tabs", callback, name)


def on_ui_train_tabs(callback: Callback, *, name: str | None = None) -> None:
    _add("ui_train_tabs", callback, name)


def on_ui_settings(callback: Callback, *, name: str | None = None) -> None:
    _add("ui_settings", callback, name)


def on_before_image_saved(callback: Callback, *, name: str | None = None) -> None:
    _add("before_image_saved", callback, name)


def on_image_saved(callback: Callback, *, name: str | None = None) -> None:
    _add("image_saved", callback, name)


def on_extra_noise(callback: Callback, *, name: str | None = None) -> None:
    _add("extra_noise", callback, name)


def on_cfg_denoiser(callback: Callback, *, name: str | None = None) -> None:
    _add("cfg_denoiser", callback, name)


def on_cfg_denoised(callback: Callback, *, name: str | None = None) -> None:
    _add("cfg_denoised", callback, name)


def on_cfg_after_cfg(callback: Callback, *, name: str | None = None) -> None:
    _add("cfg_after_cfg", callback, name)


def on_before_component(callback: Callback, *, name: str | None = None) -> None:
    _add("before_component", callback, name)


def on_after_component(callback: Callback, *, name: str | None = None) -> None:
    _add("after_component", callback, name)


def on_image_grid(callback: Callback, *, name: str | None = None) -> None:
    _add("image_grid", callback, name)


def on_infotext_pasted(callback: Callback, *, name: str | None = None) -> None:
    _add("infotext_pasted", callback, name)


def on_script_unloaded(callback: Callback, *, name: str | None = None) -> None:
    _add("script_unloaded", callback, name)


def on_before_ui(callback: Callback, *, name: str | None = None) -> None:
    _add("before_ui", callback, name)


def on_list_optimizers(callback: Callback, *, name: str | None = None) -> None:
    _add("list_optimizers", callback, name)


def on_list_unets(callback: Callback, *, name: str | None = None) -> None:
    _add("list_unets", callback, name)


def on_before_token_counter(callback: Callback, *, name: str | None = None) -> None:
    _add("before_token_counter", callback, name)


def remove_current_script_callbacks() -> None:
    """Remove the callbacks registered by the script file that calls this (A1111 semantics)."""
    import inspect

    caller = inspect.stack()[1].filename
    compat.callbacks().remove_script(caller)


def remove_callbacks_for_function(callback_func: Callback) -> None:
    compat.callbacks().remove_function(callback_func)


def app_started_callback(demo: Any, app: Any) -> None:
    compat.callbacks().call("app_started", demo, app)


def model_loaded_callback(sd_model: Any) -> None:
    compat.callbacks().call("model_loaded", sd_model)


def ui_settings_callback() -> None:
    compat.callbacks().call("ui_settings")


def infotext_pasted_callback(infotext: str, params: dict[str, Any]) -> None:
    compat.callbacks().call("infotext_pasted", infotext, params)


def ui_tabs_callback() -> list[Any]:
    """The ``(block, title, elem_id)`` tuples of every ``on_ui_tabs`` callback, flattened."""
    tabs: list[Any] = []
    for result in compat.callbacks().call("ui_tabs"):
        tabs.extend(result or [])
    return tabs
