"""``/file=<path>``: the files extension front ends fetch (their tag lists, icons, JSON), as A1111 serves them.

A1111 (Gradio 3) answered ``file=`` for paths under its own folder. Easel answers only for files inside the
allowed folders: each installed extension's folder, Easel's ``javascript/`` and the web UI root's ``tmp/``
(where A1111 extensions such as tag autocomplete leave files for their scripts). A relative path is read
from the web UI root, as A1111 does. Anything else is refused: a path that leaves those folders (``..``, a
symlink pointing out), a hidden component (``.git``), a folder or other non-regular file.
"""

from __future__ import annotations

import mimetypes
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from modules.core.paths import REPO_ROOT

STATIC_TEMP_DIR = REPO_ROOT / "tmp"


class FileRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def allowed_roots(extensions_root: Path) -> list[Path]:
    roots = [REPO_ROOT / "javascript", STATIC_TEMP_DIR]
    if extensions_root.is_dir():
        roots.extend(p for p in extensions_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return roots


def resolve_file(requested: str, roots: Iterable[Path]) -> Path:
    """The real file behind ``requested`` when it lies inside one of ``roots``; else :class:`FileRefused`."""
    text = unquote(requested.split("?", 1)[0])
    if not text or "\x00" in text:
        raise FileRefused(400, "file: empty or invalid path")
    candidate = Path(text)
    if not candidate.is_absolute():
        candidate = REPO_ROOT / candidate
    if any(part.startswith(".") and part not in (".", "..") for part in candidate.parts):
        raise FileRefused(403, "file: hidden files are not served")
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise FileRefused(404, f"file: {text} not found") from None
    for root in roots:
        try:
            real_root = root.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.is_relative_to(real_root):
            break
    else:
        raise FileRefused(403, "file: only files of extensions and the web UI's script folders are served")
    if not stat.S_ISREG(real.stat().st_mode):
        raise FileRefused(404, f"file: {text} is not a file")
    return real


def add_file_route(app: Any, roots: Callable[[], list[Path]]) -> None:
    """Register ``GET /file=<path>`` on ``app`` (before the UI mount, so it answers first)."""
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.requests import Request

    async def serve_file(request: Request) -> Any:
        raw = request.url.path[len("/file="):]
        try:
            path = resolve_file(raw, roots())
        except FileRefused as exc:
            return JSONResponse({"error": "FileRefused", "detail": exc.message}, status_code=exc.status)
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix in (".js", ".mjs"):
            media_type = "text/javascript"
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    from starlette.routing import Route

    route = Route("/file={path:path}", serve_file, methods=["GET", "HEAD"], name="extension_file")
    app.router.routes.insert(0, route)
