"""Refuse cross-site requests that change state (cross-site request forgery), with or without a login.

A web page on any other site can make a visitor's browser send a "simple" request (``POST`` with a
``text/plain``, form or multipart body, no preflight) to ``http://127.0.0.1:7860``: without this layer it would
interrupt jobs, unload the model or change options of an Easel that has no login, and with HTTP Basic the
browser would even attach the cached credentials. Two checks, on every method other than GET, HEAD and OPTIONS
and on WebSocket handshakes:

- **origin**: a request whose ``Sec-Fetch-Site`` is ``cross-site``, or whose ``Origin`` is neither this server
  (the ``Host`` or ``X-Forwarded-Host`` it was sent to) nor one of ``--cors-allow-origins``/``-regex``, gets 403;
- **content type**: on the JSON API routes (``/sdapi``, ``/internal``, ``/controlnet``) a body declared as one of
  the three types a browser may send cross-site without a preflight gets 415, so a browser too old to send
  ``Origin`` still cannot forge a request; JSON clients send ``application/json`` (or no content type).

Clients that are not browsers (curl, Python, the A1111 client libraries) send neither ``Origin`` nor
``Sec-Fetch-Site`` and are not affected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_API_PREFIXES = ("/sdapi/", "/internal/", "/controlnet/")
SIMPLE_CONTENT_TYPES = frozenset({"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"})


class CrossSiteMiddleware:
    def __init__(self, app: ASGIApp, *, allowed_origins: Sequence[str] = (),
                 allowed_origin_regex: str | None = None) -> None:
        self.app = app
        self.allowed = {origin.rstrip("/").lower() for origin in allowed_origins}
        self.allowed_regex = re.compile(allowed_origin_regex) if allowed_origin_regex else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method", "GET") in SAFE_METHODS or \
                scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", ())}
        refusal = self._refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        body = json.dumps({"error": "CrossSiteRequest" if status == 403 else "UnsupportedMediaType",
                           "detail": detail, "body": "", "errors": []}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        origin = headers.get("origin")
        if origin is not None and self._origin_allowed(origin):
            return None  # an origin the user allowed with --cors-allow-origins, or this server itself
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return 403, "cross-site request refused (Sec-Fetch-Site: cross-site)"
        if origin is not None and not _same_origin(origin, headers):
            return 403, (f"cross-site request from origin {origin[:100]!r} refused; allow it with "
                         "--cors-allow-origins")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        path = scope.get("path", "")
        if content_type in SIMPLE_CONTENT_TYPES and path.startswith(JSON_API_PREFIXES):
            return 415, f"content type {content_type!r} is not accepted here; send application/json"
        return None

    def _origin_allowed(self, origin: str) -> bool:
        normalised = origin.rstrip("/").lower()
        if normalised in self.allowed or "*" in self.allowed:
            return True
        return bool(self.allowed_regex is not None and self.allowed_regex.fullmatch(origin))


def _same_origin(origin: str, headers: dict[str, str]) -> bool:
    """Whether ``origin`` names the host the request was sent to (directly or through a reverse proxy)."""
    if origin == "null":  # sandboxed frames, file:// pages, some redirects: never this server
        return False
    netloc = urlsplit(origin).netloc.lower()
    if not netloc:
        return False
    targets = {headers.get("host", "").lower()}
    targets.update(part.strip().lower() for part in headers.get("x-forwarded-host", "").split(",") if part.strip())
    return netloc in targets
