"""Live progress for a job submitted from the browser: queue position, step/ETA, preview, then the result.

The UI never runs a model itself: a tab submits a job to the shared queue (source ``ui``) and a generator
handler polls ``queue.get``/``queue.position``/``queue.progress`` a few times a second, yielding small updates.
Polling rather than subscribing keeps the handler simple and costs one attribute read per tick; the queue's
snapshot is lock-free by design.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from modules.ui.fields import progress_text

POLL_SECONDS = 0.4


@dataclass
class JobUpdate:
    """One tick of a job as the UI shows it."""

    job_id: str
    status: str
    text: str
    fraction: float
    preview: Any | None = None
    job: Any | None = None

    @property
    def finished(self) -> bool:
        return self.job is not None


def follow_job(queue: Any, job_id: str, *, poll: float = POLL_SECONDS,
               timeout: float | None = None) -> Iterator[JobUpdate]:
    """Yield a :class:`JobUpdate` per tick until the job ends; the last one carries the final ``job``."""
    started = time.monotonic()
    last_preview_id = -1
    while True:
        job = queue.get(job_id)
        if job is None:
            yield JobUpdate(job_id, "missing", "The job disappeared from the queue", 0.0, job=None)
            return
        if job.finished:
            yield JobUpdate(job_id, job.status.value, final_text(job), 1.0, job=job)
            return
        status = job.status.value
        preview = None
        if status == "queued":
            text = progress_text(status="queued", position=queue.position(job_id))
            fraction = 0.0
        else:
            snap = queue.progress()
            if snap.job_id == job_id:
                text = progress_text(status="running", position=0, step=snap.step, total_steps=snap.total_steps,
                                     batch_no=snap.batch_no, batch_count=snap.batch_count, progress=snap.progress,
                                     eta=snap.eta_seconds, textinfo=snap.textinfo)
                fraction = snap.progress
                if snap.preview is not None and snap.preview_id != last_preview_id:
                    last_preview_id = snap.preview_id
                    preview = snap.preview
            else:
                text = progress_text(status="running", position=0, progress=job.progress)
                fraction = job.progress
        yield JobUpdate(job_id, status, text, fraction, preview=preview)
        if timeout is not None and time.monotonic() - started > timeout:
            return
        time.sleep(poll)


def final_text(job: Any) -> str:
    elapsed = ""
    if job.started_at and job.finished_at:
        elapsed = f" in {job.finished_at - job.started_at:.1f}s"
    if job.status.value == "succeeded":
        interrupted = bool(job.result and job.result.get("interrupted"))
        return ("Interrupted" if interrupted else "Done") + elapsed
    if job.status.value == "cancelled":
        return "Cancelled"
    return f"Error: {job.error or 'the job failed'}"


def progress_html(text: str, fraction: float, *, status: str = "running") -> str:
    """A progress bar plus its text line; ``status`` styles it (error in red)."""
    percent = max(0.0, min(1.0, fraction)) * 100
    css = "easel-error" if text.startswith("Error") else f"easel-{status}"
    return (f'<div class="easel-progress {css}"><div class="easel-bar"><div class="easel-fill" '
            f'style="width:{percent:.0f}%"></div></div>'
            f'<div class="easel-progress-text">{html.escape(text)}</div></div>')
