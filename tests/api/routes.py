"""Every route an app serves, including those of routers that FastAPI includes lazily and of mounted apps."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

PARAM = re.compile(r"\{[^}]+\}")


def app_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The leaf routes (``APIRoute``, ``Route``, ``WebSocketRoute``) under ``routes`` (``app.routes``), not
    descending into mounts."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from app_routes(included.routes)
        else:
            yield route


def http_endpoints(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(method, concrete path)`` of every HTTP route, mounted apps included; path parameters become ``x``."""
    for route in app_routes(routes):
        sub_routes = getattr(route, "routes", None)
        if sub_routes is not None and getattr(route, "methods", None) is None:  # a Mount
            yield from http_endpoints(sub_routes, prefix + route.path)
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            yield method, PARAM.sub("x", prefix + route.path) or "/"
