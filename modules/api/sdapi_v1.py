"""``/sdapi/v1``: AUTOMATIC1111's REST API (v1.10.1 shapes, see ``docs/A1111-CONTRACT.md``) over Easel's job queue.

Generation and extras calls submit a job and await it (``JobQueue.wait_async``: no thread is held while
waiting), so v1 clients, v2 clients and the UI share one FIFO and one worker; model switches, unloads and
reloads are jobs too. Everything else (progress, options, lists) answers from memory at once, also while a job
runs, which A1111 cannot do (its ``options`` waits behind generation). The routes live in ``modules.api.v1``, one
router per area.
"""

from __future__ import annotations

from fastapi import APIRouter

from modules.api.v1 import extras, generate, lists, options, progress, server
from modules.services import Services

AREAS = (generate, extras, progress, options, lists, server)


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1", tags=["sdapi v1 (A1111)"])
    for area in AREAS:
        router.include_router(area.build_router(services))
    return router
