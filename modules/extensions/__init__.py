"""Easel's A1111 script and extension runtime. Also A1111's ``modules.extensions`` for drop-in extensions:
``extensions``, ``active()``, ``find_extension``, ``extensions_dir``... resolve lazily from
:mod:`modules.extensions.a1111_extensions`."""

from typing import Any

A1111_NAMES = frozenset({"extensions", "active", "find_extension", "list_extensions", "Extension", "extensions_dir",
                         "extensions_builtin_dir"})


def __getattr__(name: str) -> Any:
    if name not in A1111_NAMES:  # submodules (compat, runner...) are imported, not looked up here
        raise AttributeError(f"module 'modules.extensions' has no attribute {name!r}")
    from modules.extensions.a1111_extensions import value

    try:
        return value(name)
    except KeyError:
        raise AttributeError(f"module 'modules.extensions' has no attribute {name!r}") from None
