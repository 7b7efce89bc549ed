"""Pure ASGI middlewares: request context (id, timing, last-resort 500) and the request-size limit.

Pure ASGI rather than ``BaseHTTPMiddleware`` so that streaming responses (SSE) pass through untouched and the
Gradio app mounted later at ``/`` gets the same treatment as the API routes.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
