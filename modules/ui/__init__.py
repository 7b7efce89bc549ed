"""Easel's browser UI (Gradio 6). Also A1111's ``modules.ui`` for drop-in extensions: its helper names
(``versions_html``, ``create_refresh_button``, the tool-button symbols...) resolve lazily from
:mod:`modules.extensions.a1111_ui`; Easel's own UI code does not use them."""

from typing import Any


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    from modules.extensions.a1111_ui import value

    try:
        return value(name)
    except KeyError:
        raise AttributeError(f"module 'modules.ui' has no attribute {name!r}") from None
