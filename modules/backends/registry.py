"""Name -> execution backend. Registration happens when a backend module is imported; duplicates are errors."""

from __future__ import annotations

from typing import TypeVar

from modules.backends.base import ExecutionBackend
from modules.core.errors import UserInputError

BACKENDS: dict[str, ExecutionBackend] = {}

BackendT = TypeVar("BackendT", bound=type[ExecutionBackend])


def register_backend(cls: BackendT) -> BackendT:
    """Class decorator: registers one instance of ``cls`` under ``cls.name``."""
    if cls.name in BACKENDS:
        raise ValueError(f"execution backend {cls.name!r} is already registered by {type(BACKENDS[cls.name]).__name__}")
    BACKENDS[cls.name] = cls()
    return cls


def load_builtin_backends() -> None:
    """Import the built-in backend modules (each registers itself); cheap: heavy runtimes load lazily."""
    from modules.backends import onnxruntime_backend, openvino_backend, tensorrt_backend, torch_backend  # noqa: F401


def get_backend(name: str) -> ExecutionBackend:
    load_builtin_backends()
    try:
        return BACKENDS[name]
    except KeyError:
        raise UserInputError("backend", f"unknown execution backend {name!r}; known: {', '.join(sorted(BACKENDS))}") \
            from None
