"""What the UI page carries besides gradio's app: client scripts, stylesheets and the current options.

A1111 writes its ``<script>`` and ``<link>`` tags into the page's HTML ``<head>``, so extension scripts run
before the page's load events and a listener they register at top level (``DOMContentLoaded``,
``onUiLoaded``) fires. Gradio 6 adds its own ``head=`` content from the browser after the app started, which is
too late for that; :class:`HeadInjector` therefore writes the tags into the HTML answer of the page itself.

Order, as in A1111: Easel's ``javascript/*.js`` (the runtime ``00_webui_runtime.js`` first), then every enabled
extension's ``javascript/*.js`` in load order; ``*.mjs`` files load as modules. Stylesheets: each enabled
extension's ``style.css``, then ``user.css`` from the data dir. Files are read when the UI is mounted (restart
to pick up changes, as in A1111); the options are written into each answer, so a reload sees their values.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from modules.core.paths import REPO_ROOT

log = logging.getLogger(__name__)

JAVASCRIPT_DIR = REPO_ROOT / "javascript"


@dataclass(frozen=True)
class ClientFile:
    label: str  # shown in the tag's data attribute: where the code came from
    path: Path
    text: str


@dataclass
class PageAssets:
    scripts: list[ClientFile] = field(default_factory=list)
    modules: list[Path] = field(default_factory=list)  # *.mjs, loaded through /file=
    stylesheets: list[ClientFile] = field(default_factory=list)
    localizations: dict[str, Path] = field(default_factory=dict)  # name (file stem) -> localizations/<name>.json
    _translations: dict[str, tuple[float, str]] = field(default_factory=dict)  # name -> (mtime, JSON text)

    def translations_json(self, name: str | None) -> str:
        """The chosen localization's ``{"English text": "translation"}`` as JSON (``{}`` for "None" or a name
        that is not installed or not a JSON object); re-read when the file changes."""
        path = self.localizations.get(name or "")
        if path is None:
            return "{}"
        try:
            mtime = path.stat().st_mtime
            cached = self._translations.get(name or "")
            if cached is not None and cached[0] == mtime:
                return cached[1]
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("localization %s could not be read: %s", path, exc)
            return "{}"
        if not isinstance(data, dict):
            log.warning("localization %s is not a JSON object; ignored", path)
            return "{}"
        text = json.dumps({str(k): str(v) for k, v in data.items() if isinstance(v, (str, int, float))},
                          ensure_ascii=False)
        self._translations[name or ""] = (mtime, text)
        return text


def _read(path: Path, base: Path) -> ClientFile | None:
    """``base``: the folder the label is relative to (the web UI root, or the folder holding the extension)."""
    try:
        return ClientFile(path.relative_to(base).as_posix(), path, path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("client file %s could not be read: %s", path, exc)
        return None


def find_localizations(extension_dirs: Iterable[Path]) -> dict[str, Path]:
    """A1111's ``localizations/*.json``: Easel's own, then each enabled extension's (a later one wins a name)."""
    found: dict[str, Path] = {}
    for folder in [JAVASCRIPT_DIR.parent, *extension_dirs]:
        loc_dir = folder / "localizations"
        if loc_dir.is_dir():
            for path in sorted(loc_dir.glob("*.json")):
                if path.is_file():
                    found[path.stem] = path
    return found


def collect_assets(extension_dirs: Iterable[Path], data_dir: Path | None = None) -> PageAssets:
    """Easel's scripts, then each extension's (``extension_dirs`` in load order, enabled ones only)."""
    assets = PageAssets()
    folders = [JAVASCRIPT_DIR.parent, *extension_dirs]
    for folder in folders:
        base = REPO_ROOT if folder == JAVASCRIPT_DIR.parent else folder.parent
        scripts_dir = folder / "javascript"
        if scripts_dir.is_dir():
            for path in sorted(scripts_dir.iterdir(), key=lambda p: p.name.lower()):
                if not path.is_file():
                    continue
                if path.suffix == ".js":
                    found = _read(path, base)
                    if found is not None:
                        assets.scripts.append(found)
                elif path.suffix == ".mjs":
                    assets.modules.append(path)
        if folder != JAVASCRIPT_DIR.parent and (folder / "style.css").is_file():
            css = _read(folder / "style.css", base)
            if css is not None:
                assets.stylesheets.append(css)
    assets.localizations = find_localizations(extension_dirs)
    if data_dir is not None and (data_dir / "user.css").is_file():
        css = _read(data_dir / "user.css", data_dir)
        if css is not None:
            assets.stylesheets.append(css)
    return assets


def _script_safe(text: str) -> str:
    """A literal ``</script`` (any case) inside inlined code would end the tag: escape it."""
    return text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def options_script(options: dict[str, Any]) -> str:
    # json.dumps escapes no '<', so '</' is written as '<\/' (valid JSON, harmless in a script tag)
    data = json.dumps(options, default=str).replace("</", "<\\/")
    return f"<script>window.__easel_options = {data};</script>"


def localization_script(assets: PageAssets, name: Any) -> str:
    """``window.localization``, as A1111 sets it before any client script runs (``</`` escaped for the tag)."""
    data = assets.translations_json(str(name) if name else None).replace("</", "<\\/")
    return f"<script>window.localization = {data};</script>"


def head_html(assets: PageAssets, options: dict[str, Any]) -> str:
    parts = [options_script(options), localization_script(assets, options.get("localization"))]
    for css in assets.stylesheets:
        text = css.text.replace("</style", "<\\/style")
        parts.append(f'<style data-easel-source="{html.escape(css.label)}">\n{text}\n</style>')
    for script in assets.scripts:
        parts.append(f'<script data-easel-source="{html.escape(script.label)}">\n{_script_safe(script.text)}\n'
                     "</script>")
    for module in assets.modules:
        parts.append(f'<script type="module" src="file={quote(module.as_posix())}"></script>')
    return "\n".join(parts)


class HeadInjector:
    """ASGI wrapper of the UI app: writes ``head()`` into the ``<head>`` of the page's HTML answers."""

    def __init__(self, app: Any, head: Callable[[], str]) -> None:
        self.app = app
        self.head = head

    def __getattr__(self, name: str) -> Any:  # the mount code still reaches gradio's app through the wrapper
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "GET" or \
                scope.get("path", "").rstrip("/") not in ("", scope.get("root_path", "").rstrip("/")):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await self._send_page(start, b"".join(body), send)

        await self.app(scope, receive, capture)

    async def _send_page(self, start: dict[str, Any], content: bytes, send: Any) -> None:
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
        if start.get("status") == 200 and content_type.startswith(b"text/html") and b"</head>" in content:
            try:
                extra = self.head().encode("utf-8")
            except Exception:
                log.exception("the page head could not be built; the page is served without extension scripts")
                extra = b""
            content = content.replace(b"</head>", extra + b"\n</head>", 1)
        headers.append((b"content-length", str(len(content)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": content})
