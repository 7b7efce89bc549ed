"""``/internal``: the routes A1111's browser UI polls (``progress`` by task id, pending tasks, ping).

They are UI routes: covered by ``--auth`` like the UI, not by ``--api-auth``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from modules.api.schemas import InternalProgressRequest, InternalProgressResponse
from modules.api.v1.progress import PreviewCache
from modules.jobs import JobStatus
from modules.services import Services


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/internal", tags=["internal (UI)"])
    queue = services.queue
    previews = PreviewCache()

    @router.post("/progress", response_model=InternalProgressResponse)
    async def progress(request: InternalProgressRequest) -> dict[str, Any]:
        """Progress of one task (``id_task`` = job id or ``force_task_id``) with a live preview when it changed."""
        job = await asyncio.to_thread(queue.get, request.id_task) if request.id_task else None
        if job is None:
            return {"active": False, "queued": False, "completed": False, "id_live_preview": -1,
                    "textinfo": "Waiting..."}
        if job.status is JobStatus.QUEUED:
            position, pending = await asyncio.to_thread(lambda: (queue.position(job.id), len(queue.pending_ids())))
            textinfo = f"In queue: {position}/{pending}" if position else "Waiting..."
            return {"active": False, "queued": True, "completed": False, "id_live_preview": -1, "textinfo": textinfo}
        if job.finished:
            return {"active": False, "queued": False, "completed": True, "progress": 1.0, "eta": 0.0,
                    "id_live_preview": -1, "textinfo": job.error or job.textinfo}
        snap = queue.progress()
        same = snap.job_id == job.id
        live_preview = None
        id_live_preview = request.id_live_preview
        options = services.settings.options
        if (same and request.live_preview and options.live_previews_enable and snap.preview is not None
                and snap.preview_id != request.id_live_preview):
            encoded = await previews.encode(snap)
            if encoded is not None:
                live_preview = "data:image/png;base64," + encoded
                id_live_preview = snap.preview_id
        return {"active": True, "queued": False, "completed": False,
                "progress": snap.progress if same else job.progress,
                "eta": snap.eta_seconds if same else job.eta_seconds,
                "live_preview": live_preview, "id_live_preview": id_live_preview,
                "textinfo": (snap.textinfo if same else job.textinfo) or None}

    @router.get("/pending-tasks")
    async def pending_tasks() -> dict[str, Any]:
        """Ids of queued jobs in the order they will run."""
        tasks = await asyncio.to_thread(queue.pending_ids)
        return {"size": len(tasks), "tasks": tasks}

    @router.get("/extensions")
    async def extensions() -> list[dict[str, Any]]:
        """Installed extensions and whether they run: ``status`` is ``ok``, ``disabled``, ``error`` or
        ``incompatible`` (it needs an A1111 internal Easel's diffusers core does not have), with the reason."""
        scripts = services.scripts
        return list(scripts.extension_status()) if scripts is not None else []

    @router.get("/ping")
    async def ping() -> dict[str, Any]:
        return {}

    return router
