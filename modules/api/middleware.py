"""Pure ASGI middlewares: request context (id, timing, last-resort 500), the request-size limit, and the wait for
the warm-up.

Pure ASGI rather than ``BaseHTTPMiddleware`` so that streaming responses (SSE) pass through untouched and the
Gradio app mounted later at ``/`` gets the same treatment as the API routes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modules.core.errors import StartingError

log = logging.getLogger("easel.api")


class RequestTooLarge(StarletteHTTPException):
    """Raised while reading a body beyond the limit; an HTTPException so FastAPI's body parsing passes it on."""

    def __init__(self, limit_bytes: int) -> None:
        mib = limit_bytes / (1 << 20)
        super().__init__(413, f"request body larger than {mib:g} MiB (raise it with --max-request-mb)")


def _json_message(status: int, payload: dict[str, object], extra_headers: list[tuple[bytes, bytes]] | None = None
                  ) -> tuple[Message, Message]:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.extend(extra_headers or [])
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Outermost layer: ``X-Request-Id`` and ``X-Process-Time`` headers, ``--api-log`` lines, and a JSON 500
    (``{error, detail: "internal error", request_id}``, traceback in the log) for anything nobody handled."""

    def __init__(self, app: ASGIApp, *, log_requests: bool = False) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:12]
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = {"status": 0, "started": False}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = True
                elapsed = time.perf_counter() - started
                headers = list(message.get("headers", []))
                headers.append((b"x-process-time", f"{elapsed:.4f}".encode()))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if isinstance(exc, RequestTooLarge) and not status_holder["started"]:
                start, body = _json_message(413, {"error": "RequestTooLarge", "detail": exc.detail, "body": "",
                                                  "errors": []})
                await send_with_headers(start)
                await send(body)
                return
            log.exception("internal error in %s %s (request %s)", scope.get("method"), scope.get("path"), request_id)
            if status_holder["started"]:
                raise
            start, body = _json_message(500, {"error": type(exc).__name__, "detail": "internal error", "body": "",
                                              "errors": [], "request_id": request_id})
            await send_with_headers(start)
            await send(body)
        finally:
            if self.log_requests:
                log.info("%s %s -> %s in %.3fs (request %s)", scope.get("method"), scope.get("path"),
                         status_holder["status"], time.perf_counter() - started, request_id)


class BodyLimitMiddleware:
    """Refuse bodies over ``limit_bytes`` with 413: by ``Content-Length`` at once, else while streaming them."""

    def __init__(self, app: ASGIApp, *, limit_bytes: int) -> None:
        self.app = app
        self.limit = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    error = RequestTooLarge(self.limit)
                    start, body = _json_message(413, {"error": "RequestTooLarge", "detail": error.detail, "body": "",
                                                      "errors": []}, [(b"connection", b"close")])
                    await send(start)
                    await send(body)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise RequestTooLarge(self.limit)
            return message

        await self.app(scope, limited_receive, send)


READY_WAIT_SECONDS = 10.0
"""How long a request that needs the warm-up waits for it before it is answered 503 with ``Retry-After``."""
RETRY_AFTER_SECONDS = StartingError.retry_after
READY_POLL_SECONDS = 0.05

# Routes whose answer is already right before the warm-up: they read only what the main thread builds (the job
# queue and store, the launch flags, the checkpoint list) or are the loading page and the API docs.
READY_INDEPENDENT: tuple[tuple[frozenset[str], re.Pattern[str]], ...] = tuple(
    (frozenset(methods.split()), re.compile(pattern)) for methods, pattern in (
        ("GET HEAD", r"/"),
        ("GET HEAD", r"/(docs|redoc|openapi\.json)(/.*)?"),
        ("GET", r"/sdapi/v1/(progress|cmd-flags|memory|sd-models)"),
        ("POST", r"/sdapi/v1/(interrupt|skip)"),
        ("GET", r"/sdapi/v2/jobs(/[^/]+(/events|/images/[^/]+)?)?"),
        ("DELETE", r"/sdapi/v2/jobs/[^/]+"),
        ("GET", r"/internal/(ping|pending-tasks)"),
        ("POST", r"/internal/progress"),
    ))


class ReadinessMiddleware:
    """During the warm-up, a request that needs it (scripts, extensions, generation...) waits up to
    :data:`READY_WAIT_SECONDS` for it, then gets 503 with ``Retry-After``: never an answer computed from services
    that are not there yet (an empty script list, an unchecked script name). Requests listed in
    :data:`READY_INDEPENDENT` pass at once."""

    def __init__(self, app: ASGIApp, *, ready: Any) -> None:
        self.app = app
        self.ready = ready  # threading.Event set by the warm-up

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.ready.is_set() or _ready_independent(scope):
            await self.app(scope, receive, send)
            return
        deadline = time.monotonic() + READY_WAIT_SECONDS
        while not self.ready.is_set():
            if time.monotonic() >= deadline:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1013, "reason": "starting"})
                    return
                start, body = _json_message(503, {
                    "error": StartingError.error_name, "detail": "Easel is still starting; retry in a few seconds",
                    "body": "", "errors": []}, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])
                await send(start)
                await send(body)
                return
            await asyncio.sleep(READY_POLL_SECONDS)
        await self.app(scope, receive, send)


def _ready_independent(scope: Scope) -> bool:
    method = scope.get("method", "GET")
    path = scope.get("path", "")
    return any(method in methods and pattern.fullmatch(path) for methods, pattern in READY_INDEPENDENT)
