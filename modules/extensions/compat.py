"""The binding behind the A1111 compatibility façade (``modules.shared``, ``modules.scripts``, ...).

Drop-in extension scripts import module-level names (``shared.opts``, ``shared.state``,
``modules.processing.process_images``). Those modules hold no state of their own: they read the live services
through :func:`bound`, set once at start-up by :func:`bind`. This is the one deliberate piece of module-level
state (STYLE.md rule 3); Easel's core never imports the façade or this module.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.extensions.callbacks import CallbackRegistry


@dataclass
class Binding:
    services: Any = None
    callbacks: CallbackRegistry = field(default_factory=CallbackRegistry)
    options: Any = None  # modules.extensions.options.ExtensionOptions of the bound settings
    current_basedir: Path | None = None
    state_overrides: dict[str, Any] = field(default_factory=dict)


_BINDING = Binding()

_PROCESS: contextvars.ContextVar[Callable[[Any], Any] | None] = contextvars.ContextVar("easel_process", default=None)


def bind(services: Any) -> Binding:
    """Point the façade at ``services`` (the composition root's ``Services``, or any object with its fields).

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


def bound() -> Any:
    if _BINDING.services is None:
        raise RuntimeError("the A1111 compatibility layer is not bound yet (Easel is still starting)")
    return _BINDING.services


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


def extension_service(name: str) -> Any:
    services = _BINDING.services
    extensions = getattr(services, "extensions", None) or {}
    return extensions.get(name)
