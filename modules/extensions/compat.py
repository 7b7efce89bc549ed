"""The binding behind the A1111 compatibility façade (``modules.shared``, ``modules.scripts``, ...).

Drop-in extension scripts import module-level names (``shared.opts``, ``shared.state``,
``modules.processing.process_images``). Those modules hold no state of their own: they read the live services
through :func:`bound`, set once at start-up by :func:`bind`. This is the one deliberate piece of module-level
state (STYLE.md rule 3); Easel's core never imports the façade or this module.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from modules.core.settings import Settings
from modules.extensions.callbacks import CallbackRegistry
from modules.processing.image_store import ImageStore

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from modules.extensions.discovery import Extension
    from modules.extensions.prompts import StylesService
    from modules.models.manager import LoadedModel
    from modules.processing.processor import Processor
    from modules.processing.run import ProcessingRun

class QueueControl(Protocol):
    def interrupt(self) -> bool: ...

    def skip(self) -> bool: ...


class CurrentModelSource(Protocol):
    @property
    def current(self) -> LoadedModel | None: ...


class DeviceSource(Protocol):
    @property
    def device(self) -> torch.device: ...


class ProcessorSource(Protocol):
    @property
    def processor(self) -> Processor: ...


class NamedUpscalers(Protocol):
    def names(self) -> list[str]: ...

    def upscale(self, image: Image.Image, scale: float, name: str, field: str = "upscaler") -> Image.Image: ...


class ControlNetUnits(Protocol):
    def attach(self, run: ProcessingRun, raw_units: list[Any], field_prefix: str = "controlnet"
               ) -> Sequence[object]: ...


class ScriptRunners(Protocol):
    """The scripts service (``modules.extensions.scripts_service``, which imports this module)."""

    def runner(self, is_img2img: bool) -> object: ...

    def scripts(self, is_img2img: bool) -> Sequence[object]: ...

    @property
    def extensions(self) -> Sequence[Extension]: ...

    def extension_status(self) -> list[dict[str, object]]: ...


class FacadeServices(Protocol):
    """What the A1111 façade reads from the services (the composition root's ``Services`` has all of it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def queue(self) -> QueueControl: ...

    @property
    def manager(self) -> CurrentModelSource | None: ...

    @property
    def device(self) -> DeviceSource | None: ...

    @property
    def generation(self) -> ProcessorSource | None: ...

    @property
    def image_store(self) -> ImageStore: ...

    @property
    def scripts(self) -> ScriptRunners | None: ...

    @property
    def styles(self) -> StylesService | None: ...

    @property
    def upscalers(self) -> NamedUpscalers | None: ...

    @property
    def controlnet(self) -> ControlNetUnits | None: ...


@dataclass
class Binding:
    services: FacadeServices | None = None
    callbacks: CallbackRegistry = field(default_factory=CallbackRegistry)
    options: Any = None  # modules.extensions.options.ExtensionOptions of the bound settings
    current_basedir: Path | None = None
    state_overrides: dict[str, Any] = field(default_factory=dict)


_BINDING = Binding()

_PROCESS: contextvars.ContextVar[Callable[[Any], Any] | None] = contextvars.ContextVar("easel_process", default=None)


def bind(services: FacadeServices) -> Binding:
    """Point the façade at ``services`` (the composition root's ``Services``).

    Binding other services starts over (callbacks, extension options): they belonged to the previous ones.
    """
    if _BINDING.services is not services:
        from modules.extensions.options import ExtensionOptions

        _BINDING.callbacks = CallbackRegistry()
        _BINDING.state_overrides = {}
        _BINDING.options = ExtensionOptions(services.settings)
        settings = services.settings
        if hasattr(settings, "option_checks"):
            settings.option_checks.append(_BINDING.options.check)
            settings.option_listeners.append(_BINDING.options.changed)
    _BINDING.services = services
    return _BINDING


def binding() -> Binding:
    return _BINDING


def bound() -> FacadeServices:
    if _BINDING.services is None:
        raise RuntimeError("the A1111 compatibility layer is not bound yet (Easel is still starting)")
    return _BINDING.services


def facade() -> Any:
    """The bound services, untyped: the A1111 adapters read the catalog, sampler registry... through it."""
    return bound()


def callbacks() -> CallbackRegistry:
    return _BINDING.callbacks


def options() -> Any:
    """The :class:`~modules.extensions.options.ExtensionOptions` registry of the bound settings."""
    if _BINDING.options is None:
        raise RuntimeError("the A1111 compatibility layer is not bound yet (Easel is still starting)")
    return _BINDING.options


@contextmanager
def processing_with(process: Callable[[Any], Any]) -> Iterator[None]:
    """Make ``modules.processing.process_images`` use ``process`` (the running job's processor) in this context."""
    token = _PROCESS.set(process)
    try:
        yield
    finally:
        _PROCESS.reset(token)


def current_process() -> Callable[[Any], Any] | None:
    return _PROCESS.get()


@contextmanager
def loading_basedir(path: Path) -> Iterator[None]:
    previous = _BINDING.current_basedir
    _BINDING.current_basedir = path
    try:
        yield
    finally:
        _BINDING.current_basedir = previous

