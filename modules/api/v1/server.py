"""``/sdapi/v1/server-stop``, ``server-restart`` and ``server-kill`` (only with ``--api-server-stop``)."""

from __future__ import annotations

import asyncio
import logging
import os

from fastapi import APIRouter

from modules.core.errors import PermissionDeniedError
from modules.services import Services

log = logging.getLogger(__name__)


def build_router(services: Services) -> APIRouter:
    router = APIRouter()
    settings = services.settings

    def server_control(action: str) -> dict[str, object]:
        if not settings.flags.api_server_stop:
            raise PermissionDeniedError(f"/sdapi/v1/server-{action} is disabled; start Easel with --api-server-stop")
        if action == "kill":
            log.warning("server-kill requested through the API")
            asyncio.get_running_loop().call_later(0.2, os._exit, 0)
            return {}
        log.warning("server-%s requested through the API", action)
        services.lifecycle.stop(restart=action == "restart")
        return {}

    @router.post("/server-stop")
    async def server_stop() -> dict[str, object]:
        """Stop the server (only with ``--api-server-stop``)."""
        return server_control("stop")

    @router.post("/server-restart")
    async def server_restart() -> dict[str, object]:
        """Stop the server asking the launcher to start it again (only with ``--api-server-stop``)."""
        return server_control("restart")

    @router.post("/server-kill")
    async def server_kill() -> dict[str, object]:
        """End the process at once (only with ``--api-server-stop``)."""
        return server_control("kill")

    return router
