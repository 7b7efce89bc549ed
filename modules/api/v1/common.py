"""What the ``/sdapi/v1`` routers share: the job source name and the model-job helper."""

from __future__ import annotations

import asyncio

from modules.api import generation
from modules.jobs import JobQueue

SOURCE = "api-v1"
MODEL_JOB_TIMEOUT = 600.0


async def run_model_job(queue: JobQueue, kind: str, payload: dict[str, object] | None = None) -> dict[str, object]:
    """Queue a model load/unload/reload job and wait for it (never while another job uses the model)."""
    job = await asyncio.to_thread(queue.submit, kind, payload or {}, source=SOURCE)
    final = await queue.wait_async(job.id, timeout=MODEL_JOB_TIMEOUT)
    generation.raise_for_job(final)
    return {}
