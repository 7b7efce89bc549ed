"""The in-memory side of queued and running jobs: their waiters and subscribers, and the v1 progress view.

Durable state lives in the store; what lives here is what only the running process can have: threads and event
loops waiting for a job's end, SSE subscribers, the running job's context, and the lock-free
:class:`ProgressBoard` that ``/sdapi/v1/progress`` reads at any rate.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import TYPE_CHECKING

from modules.jobs.context import JobContext
from modules.jobs.models import Job, JobEvent, ProgressSnapshot
from modules.jobs.subscription import Subscription

if TYPE_CHECKING:
    from PIL import Image


def _resolve(future: asyncio.Future[Job], job: Job) -> None:
    if not future.done():
        future.set_result(job)


@dataclasses.dataclass
class LiveJob:
    """A job that is queued or running (finished jobs live only in the store)."""

    job: Job
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    final: Job | None = None
    ctx: JobContext | None = None
    worker: str | None = None
    async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Job]]] = dataclasses.field(default_factory=list)
    subscribers: list[Subscription] = dataclasses.field(default_factory=list)
    event_index: int = 0
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def snapshot(self) -> Job:
        """The latest state: live progress while it runs."""
        return self.ctx.live_job() if self.ctx is not None else self.job

    def subscribe(self, maxsize: int) -> Subscription:
        with self.lock:
            sub = Subscription(self.job.id, maxsize=maxsize, on_close=self._unsubscribe)
            sub.publish(self._event(self.ctx if self.ctx is not None else self.job))
            self.subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            if sub in self.subscribers:
                self.subscribers.remove(sub)

    def add_async_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Job]:
        future: asyncio.Future[Job] = loop.create_future()
        with self.lock:
            if self.final is not None:
                future.set_result(self.final)
            else:
                self.async_waiters.append((loop, future))
        return future

    def discard_async_waiter(self, future: asyncio.Future[Job]) -> None:
        with self.lock:
            self.async_waiters = [(lp, fut) for lp, fut in self.async_waiters if fut is not future]

    def _event(self, source: Job | JobContext, preview: Image.Image | None = None) -> JobEvent:
        """The next event from a snapshot, or from the running job's context (cheaper per step)."""
        index = self.event_index
        self.event_index += 1
        return JobEvent(job_id=self.job.id, index=index, status=self.job.status, progress=source.progress,
                        step=source.step, total_steps=source.total_steps, batch_no=source.batch_no,
                        batch_count=source.batch_count, eta_seconds=source.eta_seconds, textinfo=source.textinfo,
                        preview=preview)

    def publish(self, preview: Image.Image | None = None) -> None:
        """Send the current state to the subscribers (no-op without any: this runs on every step)."""
        if not self.subscribers:
            return
        with self.lock:
            event = self._event(self.ctx if self.ctx is not None else self.job, preview)
            subscribers = list(self.subscribers)
        for sub in subscribers:
            sub.publish(event)

    def announce_final(self, final: Job) -> None:
        with self.lock:
            self.final = final
            waiters, self.async_waiters = self.async_waiters, []
            subscribers, self.subscribers = list(self.subscribers), []
            index = self.event_index
        self.done.set()
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future, final)
            except RuntimeError:  # that loop is closed: nobody awaits any more
                pass
        event = final_event(final, index=index)
        for sub in subscribers:
            sub.publish(event)


def final_event(job: Job, *, index: int) -> JobEvent:
    return JobEvent(job_id=job.id, index=index, status=job.status, progress=job.progress, step=job.step,
                    total_steps=job.total_steps, batch_no=job.batch_no, batch_count=job.batch_count,
                    eta_seconds=None, textinfo=job.textinfo, final=True, job=job)


class ProgressBoard:
    """What ``/sdapi/v1/progress`` shows: the oldest running job (A1111 has one), plus the number waiting.

    Readers take :attr:`current` without a lock (one attribute read). Writers (the drivers, on every step) keep
    one snapshot per running job and publish the one of the lowest ``seq``. ``preview_id`` grows by one for
    every new preview of any job, so a reader can tell a new image from the last one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, tuple[int, ProgressSnapshot]] = {}
        self._pending = 0
        self._preview_id = 0
        self.current = ProgressSnapshot()

    def _publish(self) -> None:
        if not self._running:
            self.current = ProgressSnapshot(preview_id=self._preview_id, pending_count=self._pending)
            return
        _, front = min(self._running.values(), key=lambda item: item[0])
        self.current = dataclasses.replace(front, pending_count=self._pending)

    def set_pending(self, count: int) -> None:
        with self._lock:
            self._pending = count
            self._publish()

    def started(self, job: Job, pending: int) -> None:
        with self._lock:
            self._pending = pending
            self._running[job.id] = (job.seq, ProgressSnapshot(
                job_id=job.id, kind=job.kind, active=True, started_at=job.started_at, preview_id=self._preview_id))
            self._publish()

    def ended(self, job_id: str, pending: int) -> None:
        with self._lock:
            self._pending = pending
            self._running.pop(job_id, None)
            self._publish()

    def flag(self, job_id: str, *, interrupted: bool = False, skipped: bool = False,
             cancelling: bool = False) -> None:
        with self._lock:
            item = self._running.get(job_id)
            if item is None:
                return
            old = item[1]
            self._running[job_id] = (item[0], dataclasses.replace(
                old, interrupted=old.interrupted or interrupted, skipped=old.skipped or skipped,
                cancelling=old.cancelling or cancelling))
            self._publish()

    def report(self, ctx: JobContext, preview: Image.Image | None) -> None:
        with self._lock:
            item = self._running.get(ctx.job.id)
            if item is None:
                return  # a late report from a job that has already finished
            old = item[1]
            if preview is not None:
                self._preview_id += 1
            self._running[ctx.job.id] = (item[0], ProgressSnapshot(
                job_id=old.job_id, kind=old.kind, active=True, progress=ctx.progress, eta_seconds=ctx.eta_seconds,
                step=ctx.step, total_steps=ctx.total_steps, batch_no=ctx.batch_no, batch_count=ctx.batch_count,
                textinfo=ctx.textinfo, preview=old.preview if preview is None else preview,
                preview_id=old.preview_id if preview is None else self._preview_id, started_at=old.started_at,
                pending_count=self._pending, interrupted=old.interrupted, skipped=ctx.skip_requested,
                cancelling=old.cancelling))
            self._publish()

