"""Every route an app serves, including those of routers that FastAPI includes lazily."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def app_routes(routes: Iterable[Any]) -> Iterator[Any]:
    """The leaf routes (``APIRoute``, ``Route``, ``Mount``, ``WebSocketRoute``) under ``routes`` (``app.routes``)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from app_routes(included.routes)
        else:
            yield route
