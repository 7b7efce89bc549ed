"""A1111's ``script_callbacks``: a registry of named callback lists, each call isolated.

Extensions register callbacks at import time (``script_callbacks.on_cfg_denoiser(fn)``); Easel calls them at
the matching points. Every call is wrapped: an exception is logged with the extension (or script file) that
registered the callback and the job goes on, which is A1111's behaviour and the reason extensions can be
installed without fear of one breaking every generation.

The CFG callbacks of A1111's k-diffusion loop are served by :class:`CfgCallbackHooks`, an
:class:`~modules.processing.engine.DenoiseHooks` adapter over Easel's own denoising loop.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.processing.run import ProcessingHooks

log = logging.getLogger(__name__)

CALLBACK_NAMES = (
    "app_started", "before_reload", "model_loaded", "ui_tabs", "ui_train_tabs", "ui_settings",
    "before_image_saved", "image_saved", "extra_noise", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg",
    "before_component", "after_component", "image_grid", "infotext_pasted", "script_unloaded", "before_ui",
    "after_ui", "list_optimizers", "list_unets", "before_token_counter", "before_process", "after_process",
)


@dataclass
class ImageSaveParams:
    """A1111's ``ImageSaveParams``: ``on_before_image_saved`` callbacks may change image, filename, pnginfo."""

    image: Any
    p: Any
    filename: str
    pnginfo: dict[str, Any]


@dataclass
class CFGDenoiserParams:
    """A1111's ``CFGDenoiserParams``. ``x`` is the UNet's batched latent input (uncond first, then the conds);
    a callback may replace ``x``. ``sigma`` holds the diffusers timestep of the step."""

    x: Any
    image_cond: Any
    sigma: Any
    sampling_step: int
    total_sampling_steps: int
    text_cond: Any
    text_uncond: Any
    denoiser: Any = None


@dataclass
class CFGDenoisedParams:
    """A1111's ``CFGDenoisedParams``: ``x`` is the UNet output (noise prediction) before CFG; replaceable."""

    x: Any
    sampling_step: int
    total_sampling_steps: int
    inner_model: Any = None


@dataclass
class AfterCFGCallbackParams:
    """A1111's ``AfterCFGCallbackParams``: ``x`` is the guided noise prediction; replaceable."""

    x: Any
    sampling_step: int
    total_sampling_steps: int


@dataclass
class BeforeTokenCounterParams:
    """A1111's ``BeforeTokenCounterParams``: ``before_token_counter`` callbacks may rewrite ``prompt`` (e.g. strip
    their own syntax) before the UI counts its tokens."""

    prompt: str
    steps: int
    styles: list[str]
    is_positive: bool = True


@dataclass
class ImageGridLoopParams:
    imgs: list[Any]
    cols: int
    rows: int


@dataclass
class CallbackEntry:
    name: str  # the callback point ("cfg_denoiser")
    callback: Callable[..., Any]
    owner: str  # the extension or script file that registered it
    script: str | None  # the registering file, for remove_current_script_callbacks


@dataclass
class CallbackError:
    point: str
    owner: str
    message: str


@dataclass
class CallbackRegistry:
    """Named callback lists. ``loading`` is the file whose module is being executed (set by the loader)."""

    _entries: dict[str, list[CallbackEntry]] = field(default_factory=lambda: {n: [] for n in CALLBACK_NAMES})
    errors: list[CallbackError] = field(default_factory=list)
    _loading: threading.local = field(default_factory=threading.local)
    owners: dict[str, str] = field(default_factory=dict)  # script file -> extension name

    @contextmanager
    def loading(self, script_file: Path, owner: str) -> Iterator[None]:
        previous = getattr(self._loading, "value", None)
        self._loading.value = (str(script_file), owner)
        self.owners[str(script_file)] = owner
        try:
            yield
        finally:
            self._loading.value = previous

    def loading_owner(self) -> str | None:
        """The extension whose script file is being executed on this thread, if any."""
        current = getattr(self._loading, "value", None)
        return str(current[1]) if current is not None else None

    def add(self, point: str, callback: Callable[..., Any], name: str | None = None) -> None:
        if point not in self._entries:
            raise ValueError(f"unknown callback point {point!r}; known: {', '.join(CALLBACK_NAMES)}")
        script, owner = self._owner_of(callback)
        self._entries[point].append(CallbackEntry(point, callback, name or owner, script))

    def _owner_of(self, callback: Callable[..., Any]) -> tuple[str | None, str]:
        current = getattr(self._loading, "value", None)
        if current is not None:
            return current
        module = sys.modules.get(getattr(callback, "__module__", "") or "")
        path = getattr(module, "__file__", None) or _calling_file()
        if path is None:
            return None, getattr(callback, "__module__", None) or "unknown"
        return str(path), self.owners.get(str(path), Path(path).stem)

    def entries(self, point: str) -> list[CallbackEntry]:
        return list(self._entries.get(point, ()))

    def has(self, point: str) -> bool:
        return bool(self._entries.get(point))

    def call(self, point: str, *args: Any, **kwargs: Any) -> list[Any]:
        """Call every callback of ``point``; a failing one is logged with its owner and skipped."""
        results = []
        for entry in self.entries(point):
            try:
                results.append(entry.callback(*args, **kwargs))
            except Exception as exc:
                self.report(point, entry.owner, exc)
        return results

    def report(self, point: str, owner: str, exc: BaseException) -> None:
        message = f"{exc.__class__.__name__}: {exc}"
        self.errors.append(CallbackError(point, owner, message))
        del self.errors[:-100]
        log.error("extension %s: %s callback failed: %s", owner, point, message, exc_info=exc)

    def remove_script(self, script_file: str) -> None:
        for point, entries in self._entries.items():
            self._entries[point] = [entry for entry in entries if entry.script != script_file]

    def remove_function(self, callback: Callable[..., Any]) -> None:
        for point, entries in self._entries.items():
            self._entries[point] = [entry for entry in entries if entry.callback is not callback]

    def clear(self) -> None:
        for entries in self._entries.values():
            entries.clear()


def _calling_file() -> str | None:
    """The first stack frame outside the callback machinery (how A1111 attributes callbacks)."""
    here = {__file__, str(Path(__file__).with_name("compat.py"))}
    for frame in inspect.stack()[2:]:
        name = frame.filename
        if name not in here and not name.endswith("script_callbacks.py"):
            return name
    return None


class ExtraNoiseCallbacks(ProcessingHooks):
    """A processing hook running A1111's ``extra_noise`` callbacks (``img2img_extra_noise`` > 0 only, as A1111);
    a callback may replace ``params.noise``."""

    def __init__(self, registry: CallbackRegistry) -> None:
        self.registry = registry

    def extra_noise(self, run: Any, params: Any) -> None:
        self.registry.call("extra_noise", params)


class CfgCallbackHooks:
    """:class:`~modules.processing.engine.DenoiseHooks` that runs A1111's CFG callbacks at every step.

    Differences from A1111's k-diffusion loop, by design of a diffusers loop: ``sigma`` is the timestep,
    ``x``/``x`` of the denoised callbacks are noise predictions rather than denoised latents, and a callback
    that replaces ``text_cond`` is not honoured (the UNet's conditioning is fixed per prompt schedule step).
    """

    def __init__(self, registry: CallbackRegistry) -> None:
        self.registry = registry

    def before_unet(self, state: Any) -> None:
        if not self.registry.has("cfg_denoiser"):
            return
        import torch

        text_cond = torch.cat(state.cond) if len(state.cond) > 1 else (state.cond[0] if state.cond else None)
        params = CFGDenoiserParams(state.latent_input, None, state.timestep, state.step, state.total_steps,
                                   text_cond, state.uncond)
        self.registry.call("cfg_denoiser", params)
        if params.x is not state.latent_input and params.x.shape == state.latent_input.shape:
            state.latent_input = params.x

    def after_unet(self, state: Any) -> None:
        if not self.registry.has("cfg_denoised") or state.noise_pred is None:
            return
        params = CFGDenoisedParams(state.noise_pred, state.step, state.total_steps)
        self.registry.call("cfg_denoised", params)
        if params.x is not state.noise_pred and params.x.shape == state.noise_pred.shape:
            state.noise_pred = params.x

    def after_cfg(self, state: Any) -> None:
        if not self.registry.has("cfg_after_cfg") or state.noise_pred is None:
            return
        params = AfterCFGCallbackParams(state.noise_pred, state.step, state.total_steps)
        self.registry.call("cfg_after_cfg", params)
        if params.x is not state.noise_pred and params.x.shape == state.noise_pred.shape:
            state.noise_pred = params.x


class ImageSaveCallbacks:
    """An image store listener (:class:`~modules.processing.image_store.SaveListener`) running A1111's
    ``before_image_saved`` and ``image_saved`` callbacks on every save: job samples, grids, extras, the UI's
    Save button and ``modules.images.save_image``. ``p`` is the run that made the image (None outside a run);
    ``pnginfo["parameters"]`` is the infotext, which a ``before_image_saved`` callback may change, as it may
    replace ``image``. Changing ``filename`` has no effect: the store alone decides paths (they stay inside the
    outputs folder)."""

    def __init__(self, registry: Callable[[], CallbackRegistry]) -> None:
        self.registry = registry

    def before_save(self, event: Any) -> None:
        registry = self.registry()
        if not registry.has("before_image_saved"):
            return
        params = ImageSaveParams(event.image, event.context, str(event.path), {"parameters": event.infotext})
        registry.call("before_image_saved", params)
        event.image = params.image
        event.infotext = (params.pnginfo or {}).get("parameters")

    def after_save(self, event: Any) -> None:
        registry = self.registry()
        if registry.has("image_saved"):
            registry.call("image_saved", ImageSaveParams(event.image, event.context, str(event.path),
                                                         {"parameters": event.infotext}))
