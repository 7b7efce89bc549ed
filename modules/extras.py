"""A1111's ``modules.extras`` helpers for drop-in extensions (the PNG info reader)."""

from __future__ import annotations

import html
from typing import Any

from modules.processing.image_store import read_infotext


def run_pnginfo(image: Any) -> tuple[str, str | None, str]:
    """``("", infotext, html)`` of an image's stored generation parameters (A1111's return shape)."""
    if image is None:
        return "", "", ""
    text, items = read_infotext(image)
    shown = {"parameters": text, **items} if text else dict(items)
    info = "".join(f"<div><p><b>{html.escape(str(key))}</b></p><p>{html.escape(str(value))}</p></div>\n"
                   for key, value in shown.items() if value is not None)
    if not info:
        info = "<div><p>Nothing found in the image.</p></div>"
    return "", text, info
