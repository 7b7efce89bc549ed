"""Every route an app serves, including those of routers that FastAPI includes lazily and of mounted apps."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

PARAM = re.compile(r"\{[^}]+\}")


def app_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(full path, leaf route)`` for every route under ``routes`` (``app.routes``), through lazily included
    routers (with their include prefix), not descending into mounts."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from app_routes(included.routes, prefix + route.include_context.prefix)
        else:
            yield prefix + getattr(route, "path", ""), route


def http_endpoints(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """``(method, concrete path)`` of every HTTP route, mounted apps included; path parameters become ``x``."""
    for path, route in app_routes(routes, prefix):
        sub_routes = getattr(route, "routes", None)
        if sub_routes is not None and getattr(route, "methods", None) is None:  # a Mount
            yield from http_endpoints(sub_routes, path)
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            yield method, PARAM.sub("x", path) or "/"
