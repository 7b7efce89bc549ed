"""HTTP Basic authentication as one pure ASGI middleware.

``--auth user:pass[,user:pass]`` protects *every* route of the app (API, files, and the Gradio UI that the
warm-up thread mounts at ``/`` later: a middleware wraps the router, so routes added after start-up are covered
too, HTTP and WebSocket alike). ``--api-auth`` protects the API routes (``/sdapi/...``); when both are given,
an API request may use credentials from either list (API clients get their own accounts, people their own).

Passwords are compared with :func:`secrets.compare_digest` over every configured account, so the time taken
does not reveal which user names exist or how much of a password matched. CORS preflight requests
(``OPTIONS`` with ``Access-Control-Request-Method``) are answered by the CORS middleware outside this one.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

API_PREFIXES = ("/sdapi/",)
REALM = "Easel"


def parse_credentials(spec: str | None, *, flag: str) -> list[tuple[str, str]]:
    """``"u1:p1,u2:p2"`` -> ``[("u1", "p1"), ("u2", "p2")]``; a malformed entry is a start-up error naming the flag."""
    if not spec:
        return []
    accounts = []
    for entry in spec.split(","):
        entry = entry.strip()
        if not entry:
            continue
        user, sep, password = entry.partition(":")
        if not sep or not user:
            raise ValueError(f"--{flag.replace('_', '-')}: expected user:password[,user:password], got {entry!r}")
        accounts.append((user, password))
    return accounts


def check_basic(header: str | None, accounts: Sequence[tuple[str, str]]) -> bool:
    """True when ``header`` is ``Basic base64(user:pass)`` for one of ``accounts`` (constant-time compare)."""
    if not header or not accounts:
        return False
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    user, sep, password = decoded.partition(":")
    if not sep:
        return False
    matched = False
    for known_user, known_password in accounts:
        user_ok = secrets.compare_digest(user.encode(), known_user.encode())
        password_ok = secrets.compare_digest(password.encode(), known_password.encode())
        matched |= user_ok & password_ok
    return matched


@dataclass(frozen=True)
class AuthPolicy:
    everything: tuple[tuple[str, str], ...] = ()  # --auth
    api: tuple[tuple[str, str], ...] = ()  # --api-auth

    @property
    def enabled(self) -> bool:
        return bool(self.everything or self.api)

    def accounts_for(self, path: str) -> tuple[tuple[str, str], ...] | None:
        """The accounts that may use ``path``; None when it is open."""
        if path.startswith(API_PREFIXES) and self.api:
            return self.api + self.everything
        return self.everything or None


class BasicAuthMiddleware:
    def __init__(self, app: ASGIApp, policy: AuthPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        accounts = self.policy.accounts_for(scope.get("path", ""))
        if accounts is None:
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                header = value.decode("latin-1")
                break
        if check_basic(header, accounts):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "authentication required"})
            return
        body = json.dumps({"error": "Unauthorized", "detail": "authentication required (HTTP Basic)", "body": "",
                           "errors": []}).encode()
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", f'Basic realm="{REALM}"'.encode()),
            ],
        })
        await send({"type": "http.response.body", "body": body})
