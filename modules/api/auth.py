"""HTTP Basic authentication and the failed-login throttle, as one pure ASGI middleware.

``--auth user:pass[,user:pass]`` protects *every* route of the app (API, files, and the Gradio UI that the
warm-up thread mounts at ``/`` later: a middleware wraps the router, so routes added after start-up are covered
too, HTTP and WebSocket alike). ``--api-auth`` protects every route that is not the browser UI's page or its
static files (:data:`UI_PAGE`): ``/sdapi``, ``/internal``, ``/controlnet``, the Gradio API and its file and upload
routes, the API docs. When both are given, a request may use credentials from either list (API clients get their
own accounts, people their own).

Passwords are compared with :func:`secrets.compare_digest` over every configured account, so the time taken
does not reveal which user names exist or how much of a password matched. Failed logins are counted per client
address (:class:`LoginThrottle`): past the limit the client gets 429 with ``Retry-After`` and its credentials are
not even checked until the lock-out ends; each failure is logged with the user name and address, never the
password. CORS preflight requests (``OPTIONS`` with ``Access-Control-Request-Method``) are answered by the CORS
middleware outside this one.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

REALM = "Easel"
UI_PAGE = re.compile(r"/(|config/?|theme\.css|favicon\.ico|robots\.txt|manifest\.json|pwa_icon(/[^/]*)?"
                     r"|(static|assets|svelte)/.*)")
"""GET/HEAD paths of the browser UI's page and static files: the only ones ``--api-auth`` leaves open."""
MAX_FAILURES = 10
FAILURE_WINDOW_SECONDS = 60.0
LOCKOUT_SECONDS = 60.0
MAX_LOCKOUT_SECONDS = 3600.0
MAX_TRACKED_CLIENTS = 10_000

log = logging.getLogger("easel.auth")


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


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` of a ``Basic base64(user:pass)`` header; None when it is not one."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def check_basic(header: str | None, accounts: Sequence[tuple[str, str]]) -> bool:
    """True when ``header`` is ``Basic base64(user:pass)`` for one of ``accounts`` (constant-time compare)."""
    credentials = basic_credentials(header)
    if credentials is None or not accounts:
        return False
    user, password = credentials
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

    def accounts_for(self, path: str, method: str = "GET") -> tuple[tuple[str, str], ...] | None:
        """The accounts that may use ``method path``; None when it is open."""
        if self.api and not (method in ("GET", "HEAD") and UI_PAGE.fullmatch(path)):
            return self.api + self.everything
        return self.everything or None


def exposure_warnings(listen: bool, policy: AuthPolicy) -> list[str]:
    """What to shout at start-up about who can reach this server."""
    if not listen:
        return []
    if not policy.enabled:
        return ["!!! --listen without --auth or --api-auth: ANYONE on your network can use this Easel (generate, "
                "change settings, read every output, stop jobs). Add --auth user:password, or drop --listen to "
                "serve only this computer. !!!"]
    if not policy.everything:
        return ["--listen with --api-auth only: the browser UI's page is served without a login on your network; "
                "use --auth to require one for it too"]
    return []


@dataclass
class _Client:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0
    lockouts: int = 0


class LoginThrottle:
    """Failed logins per client address: :data:`MAX_FAILURES` within :data:`FAILURE_WINDOW_SECONDS` lock the client
    out for :data:`LOCKOUT_SECONDS`, doubled for each further lock-out (up to :data:`MAX_LOCKOUT_SECONDS`); a
    successful login clears the record."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds the client is still locked out for (0 when it may try)."""
        with self._lock:
            record = self._clients.get(client)
            return max(0.0, record.locked_until - self.clock()) if record is not None else 0.0

    def failed(self, client: str) -> float:
        """Record a failure; returns the lock-out it caused (0 when none)."""
        now = self.clock()
        with self._lock:
            record = self._clients.pop(client, None) or _Client()
            self._clients[client] = record  # most recent last: the oldest are dropped first
            while len(self._clients) > MAX_TRACKED_CLIENTS:
                self._clients.popitem(last=False)
            while record.failures and record.failures[0] < now - FAILURE_WINDOW_SECONDS:
                record.failures.popleft()
            record.failures.append(now)
            if len(record.failures) < MAX_FAILURES:
                return 0.0
            record.failures.clear()
            record.lockouts += 1
            lockout = min(MAX_LOCKOUT_SECONDS, LOCKOUT_SECONDS * 2 ** (record.lockouts - 1))
            record.locked_until = now + lockout
            return lockout

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)


class BasicAuthMiddleware:
    def __init__(self, app: ASGIApp, policy: AuthPolicy, throttle: LoginThrottle | None = None) -> None:
        self.app = app
        self.policy = policy
        self.throttle = throttle or LoginThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        accounts = self.policy.accounts_for(path, scope.get("method", "GET"))
        if accounts is None:
            await self.app(scope, receive, send)
            return
        header = None
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                header = value.decode("latin-1")
                break
        client = str((scope.get("client") or ("unknown",))[0])
        if header is not None:
            locked = self.throttle.retry_after(client)
            if locked > 0:  # credentials are not even checked while locked out
                await _refuse(scope, send, 429, "TooManyRequests",
                              f"too many failed logins from {client}; retry in {math.ceil(locked)} s",
                              [(b"retry-after", str(math.ceil(locked)).encode())])
                return
        if check_basic(header, accounts):
            self.throttle.succeeded(client)
            await self.app(scope, receive, send)
            return
        if header is not None:
            lockout = self.throttle.failed(client)
            user = (basic_credentials(header) or ("(malformed header)", ""))[0]
            log.warning("failed login for user %r from %s on %s%s", user[:64], client, path[:200],
                        f"; locked out for {lockout:g} s" if lockout else "")
        await _refuse(scope, send, 401, "Unauthorized", "authentication required (HTTP Basic)",
                      [(b"www-authenticate", f'Basic realm="{REALM}"'.encode())])


async def _refuse(scope: Scope, send: Send, status: int, error: str, detail: str,
                  headers: list[tuple[bytes, bytes]]) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
        return
    body = json.dumps({"error": error, "detail": detail, "body": "", "errors": []}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})
