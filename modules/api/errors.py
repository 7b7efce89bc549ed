"""Error bodies in A1111's JSON shape ``{error, detail, body, errors}``, and the handlers that produce them.

Every error a client sees carries the same four keys so that A1111 clients (which read ``detail``) and Easel's
own clients (which read ``errors[].loc`` to find the field) both work:

- ``error``: a short class name (``ValidationError``, ``NotFound``, ``HTTPException``, ``InternalError``...);
- ``detail``: one human-readable sentence that names the field and what is allowed;
- ``body``: the offending request body for validation errors when it is small, else ``""``;
- ``errors``: a list of ``{loc, msg, type}`` (pydantic's layout; ``loc`` names the field), possibly empty.

Internal failures get a 500 with ``detail: "internal error"`` and a ``request_id`` that is also in the server log
next to the traceback (see :class:`modules.api.middleware.RequestContextMiddleware`).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules.core.errors import EaselError, UserInputError

log = logging.getLogger(__name__)

MAX_ECHOED_BODY = 4096
"""Validation errors echo the request body (as A1111 does) only up to this many characters: base64 images
would otherwise make every 422 megabytes long."""

RE_FIELD_PREFIX = re.compile(r"^(?P<field>[A-Za-z_][\w.\[\]]*): (?P<reason>.+)$", re.DOTALL)


def error_body(error: str, detail: str, *, body: Any = "", errors: list[dict[str, Any]] | None = None,
               **extra: Any) -> dict[str, Any]:
    """The A1111 error shape; ``extra`` keys (``request_id``) are appended."""
    return {"error": error, "detail": detail, "body": body, "errors": errors or [], **extra}


def error_response(status_code: int, error: str, detail: str, *, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> JSONResponse:
    return JSONResponse(error_body(error, detail, **kwargs), status_code=status_code, headers=headers)


def _loc_text(loc: Any) -> str:
    parts = [str(part) for part in (loc or ()) if part not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _jsonable_errors(errors: Any) -> list[dict[str, Any]]:
    cleaned = []
    for item in errors or ():
        cleaned.append({
            "loc": [part if isinstance(part, int | str) else str(part) for part in item.get("loc", ())],
            "msg": str(item.get("msg", "")),
            "type": str(item.get("type", "value_error")),
        })
    return cleaned


def _small_body(body: Any) -> Any:
    try:
        text = json.dumps(body)
    except (TypeError, ValueError):
        return ""
    return body if len(text) <= MAX_ECHOED_BODY else ""


def easel_error_response(exc: EaselError) -> JSONResponse:
    detail = exc.to_detail()
    errors = detail.get("errors")
    if errors is None and not isinstance(exc, UserInputError):
        errors = []
    return error_response(exc.status_code, exc.error_name, exc.message, errors=errors)


def validation_error_response(exc: RequestValidationError) -> JSONResponse:
    errors = _jsonable_errors(exc.errors())
    if errors:
        first = errors[0]
        detail = f"{_loc_text(first['loc'])}: {first['msg']}"
        if len(errors) > 1:
            detail += f" (and {len(errors) - 1} more)"
    else:
        detail = "invalid request"
    return error_response(422, "ValidationError", detail, body=_small_body(exc.body), errors=errors)


def job_error(message: str, info: dict[str, Any] | None = None) -> EaselError:
    """Turn a failed job's stored error back into the error (status code, name, field) the job raised.

    ``info`` is what the queue kept of the original error. Jobs written before it kept that (queue schema 1)
    have only the message: one that starts with ``field: `` came from a UserInputError (422 naming that field),
    internal failures and server stops are 5xx, anything else is a 400.
    """
    from modules.jobs import INTERRUPTED_MESSAGE

    if info and isinstance(info.get("status"), int):
        field = info.get("field")
        if isinstance(field, str) and message.startswith(f"{field}: "):
            restored: EaselError = UserInputError(field, message[len(field) + 2:])
        else:
            restored = EaselError(message)
        restored.status_code = int(info["status"])
        restored.error_name = str(info.get("name") or restored.error_name)
        return restored

    if message.startswith("internal error"):
        error = EaselError(message)
        error.status_code = 500
        error.error_name = "InternalError"
        return error
    if message == INTERRUPTED_MESSAGE or message.startswith(("no model found", "Easel could not start")):
        error = EaselError(message)
        error.status_code = 503
        error.error_name = "Unavailable"
        return error
    match = RE_FIELD_PREFIX.match(message)
    if match and " " not in match.group("field"):
        return UserInputError(match.group("field"), match.group("reason"))
    return EaselError(message)


def install_exception_handlers(app: FastAPI) -> None:
    """EaselError, request validation and HTTP errors as A1111-shaped JSON (500s: see the request middleware)."""

    async def on_easel_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EaselError)
        if exc.status_code >= 500:
            log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
        return easel_error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_error_response(exc)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return error_response(exc.status_code, "HTTPException", detail, headers=getattr(exc, "headers", None))

    app.add_exception_handler(EaselError, on_easel_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
