"""Error bodies in A1111's JSON shape ``{error, detail, body, errors}``, and the handlers that produce them.

Every error a client sees carries the same four keys so that A1111 clients (which read ``detail``) and Easel's
own clients (which read ``errors[].loc`` to find the field) both work:

- ``error``: a short class name (``ValidationError``, ``NotFound``, ``HTTPException``, ``InternalError``...);
- ``detail``: one human-readable sentence that names the field and what is allowed;
- ``body``: the offending request body for validation errors when it is small, else ``""``;
- ``errors``: a list of ``{loc, msg, type}`` (pydantic's layout; ``loc`` names the field), possibly empty.

Internal failures get a 500 with ``detail: "internal error"`` and a ``request_id`` that is also in the server log
next to the traceback (see :class:`modules.api.middleware.RequestContextMiddleware`).

Error bodies are always valid JSON: what a client sent is echoed only after non-finite numbers become ``null``
and unencodable text (lone surrogates) is escaped. The OpenAPI schema declares this body (``ErrorBody``) for the
422 of every route and as every route's ``default`` response, so schema-aware clients see what they get.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from modules.core.errors import EaselError, StartingError, UserInputError

log = logging.getLogger(__name__)

MAX_ECHOED_BODY = 4096
"""Validation errors echo the request body (as A1111 does) only up to this many characters: base64 images
would otherwise make every 422 megabytes long."""

RE_FIELD_PREFIX = re.compile(r"^(?P<field>[A-Za-z_][\w.\[\]]*): (?P<reason>.+)$", re.DOTALL)


class ErrorItem(BaseModel):
    loc: list[int | str] = Field(default_factory=list, description="path to the field: [\"body\", \"seed\"]")
    msg: str = ""
    type: str = ""


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer (A1111's shape plus ``errors``)."""

    error: str = Field(description="ValidationError, NotFound, HTTPException, InternalError...")
    detail: str = Field(description="one sentence naming the field and what is allowed")
    body: Any = Field("", description="the offending request body when small, else an empty string")
    errors: list[ErrorItem] = Field(default_factory=list)
    request_id: str | None = Field(None, description="internal errors: the id logged with the traceback")


def json_safe(value: Any) -> Any:
    """``value`` with non-finite floats as None and unencodable strings (lone surrogates) escaped."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {json_safe(str(key)): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, bool | int):
        return value
    return json_safe(str(value))


class SafeJSONResponse(JSONResponse):
    """A JSON response that cannot fail to encode (error bodies echo client input)."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError):  # UnicodeEncodeError is a ValueError
            return json.dumps(json_safe(content), ensure_ascii=False, allow_nan=False,
                              separators=(",", ":")).encode("utf-8")


def error_body(error: str, detail: str, *, body: Any = "", errors: list[dict[str, Any]] | None = None,
               **extra: Any) -> dict[str, Any]:
    """The A1111 error shape; ``extra`` keys (``request_id``) are appended."""
    return {"error": error, "detail": detail, "body": body, "errors": errors or [], **extra}


def error_response(status_code: int, error: str, detail: str, *, headers: dict[str, str] | None = None,
                   **kwargs: Any) -> JSONResponse:
    return SafeJSONResponse(error_body(error, detail, **kwargs), status_code=status_code, headers=headers)


def _loc_text(loc: Any) -> str:
    text = ""
    for part in loc or ():
        if part in ("body", "query", "path"):
            continue
        text += f"[{part}]" if isinstance(part, int) and text else f".{part}" if text else str(part)
    return text or "body"


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
    if isinstance(body, bytes | bytearray):  # a body that was not JSON: echo it only as (safe) text
        body = bytes(body[:MAX_ECHOED_BODY + 1]).decode("utf-8", "replace")
    body = json_safe(body)
    try:
        text = json.dumps(body, allow_nan=False)
    except (TypeError, ValueError):
        return ""
    return body if len(text) <= MAX_ECHOED_BODY else ""


def easel_error_response(exc: EaselError) -> JSONResponse:
    detail = exc.to_detail()
    errors = detail.get("errors")
    if errors is None and not isinstance(exc, UserInputError):
        errors = []
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, StartingError) else None
    return error_response(exc.status_code, exc.error_name, exc.message, errors=errors, headers=headers)


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


def install_error_schema(app: FastAPI) -> None:
    """Make the app's OpenAPI schema declare the error body the server really sends.

    FastAPI documents its own 422 layout (``HTTPValidationError``); Easel answers :class:`ErrorBody`. The 422
    of every route is pointed at ``ErrorBody`` and every operation gets it as its ``default`` response too
    (404, 409, 413, 500... all share that shape).
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in error_schema.pop("$defs", {}).items():
            components[name] = definition
        components["ErrorBody"] = error_schema
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        reference = {"$ref": "#/components/schemas/ErrorBody"}
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                if "422" in responses:
                    responses["422"] = {"description": "Validation error: errors[].loc names the field",
                                        "content": {"application/json": {"schema": reference}}}
                responses.setdefault("default", {"description": "Error (A1111's error body)",
                                                 "content": {"application/json": {"schema": reference}}})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


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
