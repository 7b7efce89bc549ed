"""Name -> device backend class. Registration happens when a backend module is imported."""

from __future__ import annotations

from typing import TypeVar

from modules.devices.base import DeviceBackend

BACKENDS: dict[str, type[DeviceBackend]] = {}

BackendT = TypeVar("BackendT", bound=type[DeviceBackend])


def register_backend(cls: BackendT) -> BackendT:
    """Class decorator. Registering a second class under a taken name is a programming error, not an override."""
    if cls.name in BACKENDS:
        raise ValueError(f"device backend {cls.name!r} is already registered by {BACKENDS[cls.name].__qualname__}")
    BACKENDS[cls.name] = cls
    return cls
