"""``/sdapi/v1/progress``, ``/sdapi/v1/interrupt`` and ``/sdapi/v1/skip``: the running job, from a lock-free
snapshot of the queue."""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Query
from PIL import Image

from modules.api.schemas import ProgressResponse, ProgressState
from modules.jobs import ProgressSnapshot
from modules.services import Services


class PreviewCache:
    """The last encoded live preview, so that clients polling ``progress`` several times a second do not make
    the server re-encode the same picture on every poll.

    A small preview (the usual case: a latent-sized sketch) is encoded inline, which costs less than a hop to
    another thread; a large one runs on a thread of its own, not the default pool: that pool also runs SQLite
    calls that can wait for the queue's lock, and ``progress`` must never queue behind them.
    """

    INLINE_PIXELS = 256 * 256

    def __init__(self) -> None:
        self._key: tuple[str | None, int] | None = None
        self._data: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-preview")

    async def encode(self, snapshot: ProgressSnapshot) -> str | None:
        if snapshot.preview is None:
            return None
        key = (snapshot.job_id, snapshot.preview_id)
        if key != self._key:
            size = snapshot.preview.size
            if size[0] * size[1] <= self.INLINE_PIXELS:
                data = encode_preview(snapshot.preview)
            else:
                loop = asyncio.get_running_loop()
                data = await loop.run_in_executor(self._executor, encode_preview, snapshot.preview)
            self._key, self._data = key, data
        return self._data


def encode_preview(image: Image.Image) -> str:
    """A live preview (PIL image) as bare base64 PNG, without metadata."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def build_router(services: Services) -> APIRouter:
    router = APIRouter()
    queue = services.queue
    previews = PreviewCache()

    @router.get("/progress", response_model=ProgressResponse)
    async def progress(skip_current_image: bool = Query(False)) -> dict[str, Any]:
        """Progress of the running job, from a lock-free snapshot (answers in microseconds)."""
        snap = queue.progress()
        state = ProgressState(
            skipped=snap.skipped, interrupted=snap.interrupted,
            stopping_generation=snap.interrupted or snap.cancelling,
            job=(snap.kind or "") if snap.active else "",
            job_count=snap.batch_count if snap.active else 0,
            job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(snap.started_at)) if snap.started_at else "0",
            job_no=snap.batch_no, sampling_step=snap.step, sampling_steps=snap.total_steps)
        current_image = None if skip_current_image or not snap.active else await previews.encode(snap)
        return {"progress": snap.progress if snap.active else 0.0, "eta_relative": snap.eta_seconds or 0.0,
                "state": state, "current_image": current_image, "textinfo": snap.textinfo}

    @router.post("/interrupt")
    async def interrupt() -> dict[str, Any]:
        """Stop the running job, keeping the images it finished (A1111 semantics)."""
        await asyncio.to_thread(queue.interrupt)
        return {}

    @router.post("/skip")
    async def skip() -> dict[str, Any]:
        """Abandon the current image of the running batch and go on with the next."""
        await asyncio.to_thread(queue.skip)
        return {}

    return router
