"""A1111's ``modules.paths_internal`` for drop-in extensions: folder names answered from Easel's settings."""

from __future__ import annotations

from typing import Any

from modules.extensions.a1111_paths import path_value


def __getattr__(name: str) -> Any:
    try:
        return path_value(name)
    except KeyError:
        raise AttributeError(f"module 'modules.paths_internal' has no attribute {name!r}") from None
