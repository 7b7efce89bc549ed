"""Name -> execution backend. The built-in backends are registered here, on first use; a duplicate name is an
error. The backend modules do not import this one (their heavy runtimes load lazily, in ``prepare``)."""

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
    """Register the built-in backends (once); cheap: their heavy runtimes load lazily."""
    from modules.backends.onnxruntime_backend import OnnxRuntimeBackend
    from modules.backends.openvino_backend import OpenVinoBackend
    from modules.backends.tensorrt_backend import TensorRtBackend
    from modules.backends.torch_backend import TorchBackend

    for cls in (TorchBackend, OnnxRuntimeBackend, OpenVinoBackend, TensorRtBackend):
        if not isinstance(BACKENDS.get(cls.name), cls):
            register_backend(cls)


def get_backend(name: str) -> ExecutionBackend:
    load_builtin_backends()
    try:
        return BACKENDS[name]
    except KeyError:
        raise UserInputError("backend", f"unknown execution backend {name!r}; known: {', '.join(sorted(BACKENDS))}") \
            from None
