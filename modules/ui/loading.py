"""The page ``/`` shows while the warm-up thread is still building the UI (a few seconds at start-up).

The composition root adds it (GET ``/``, :func:`add_loading_page`) to the API app at start;
:func:`modules.ui.mount.mount_ui` removes that route when it mounts the real UI at ``/``, and the page's
self-reload then lands on the UI.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

RELOAD_SECONDS = 2


def loading_page(message: str = "Easel is starting…") -> str:
    """A tiny self-reloading HTML page (no scripts needed; a meta refresh works everywhere)."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{RELOAD_SECONDS}'>"
        "<title>Easel</title><style>body{font-family:system-ui,sans-serif;display:flex;align-items:center;"
        "justify-content:center;height:90vh;color:#444}p{font-size:1.3em}</style></head>"
        f"<body><p>{message} This page reloads by itself.</p></body></html>"
    )


def add_loading_page(app: FastAPI) -> None:
    """Serve :func:`loading_page` at ``/`` until the UI replaces it."""

    @app.get("/", include_in_schema=False)
    def starting_page() -> HTMLResponse:
        return HTMLResponse(loading_page())
