"""One FIFO job queue with one worker thread per device: every generation in Easel runs through it.

API handlers, the UI and scripts call :meth:`JobQueue.submit` and then wait, poll or subscribe; only the
worker thread calls the runner, so no request handler ever holds the device. The queue is generic: the
runner (plugged in by the composition root) turns a job's ``kind`` and ``payload`` into a JSON-able result.

Order is the store's monotonic ``seq`` (assigned inside the same lock that appends to the in-memory FIFO, so
the two always agree), never wall-clock timestamps. Durable state lives in :class:`JobStore`; live progress
lives in memory (the running :class:`JobContext` and an immutable :class:`ProgressSnapshot` that readers fetch
without locking) and is written to SQLite at most every ``progress_persist_interval`` seconds.

Lifecycle: ``start()`` spawns the worker; ``stop(timeout)`` asks the running job to stop (the runner sees
``should_stop()``/``check()``), and that job ends ``failed`` with the same "interrupted: server stopped" message
a crash leaves, so both ways of losing a job read the same; queued jobs stay queued and run after the next
start. The queue does not own the store: the caller closes it after ``stop()``.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from modules.core.errors import EaselError, JobCancelled, NotFoundError
from modules.jobs.context import JobContext
from modules.jobs.models import Job, JobEvent, JobStatus, ProgressSnapshot, new_job_id, validate_job_id
from modules.jobs.store import INTERRUPTED_INFO, INTERRUPTED_MESSAGE, JobStore
from modules.jobs.subscription import Subscription

log = logging.getLogger(__name__)

Runner = Callable[[Job, JobContext], "dict[str, Any] | None"]
"""Runs one job on the device (in the worker thread); returns the JSON-able result (image paths, info...)."""


@dataclasses.dataclass
class _Entry:
    """In-memory state of a job that is queued or running (finished jobs live only in the store)."""

    job: Job
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    final: Job | None = None
    ctx: JobContext | None = None
    async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Job]]] = dataclasses.field(default_factory=list)
    subscribers: list[Subscription] = dataclasses.field(default_factory=list)
    event_index: int = 0


def _resolve(future: asyncio.Future[Job], job: Job) -> None:
    if not future.done():
        future.set_result(job)


class JobQueue:
    """FIFO of jobs over a :class:`JobStore`, executed one at a time by a single worker thread."""

    def __init__(
        self,
        store: JobStore,
        runner: Runner,
        *,
        name: str = "default",
        progress_persist_interval: float | None = 1.0,
        subscription_maxsize: int = 256,
    ) -> None:
        self.store = store.open()
        self.runner = runner
        self.name = name
        self.progress_persist_interval = progress_persist_interval
        self.subscription_maxsize = subscription_maxsize
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        self._pending: deque[str] = deque()
        self._entries: dict[str, _Entry] = {}
        self._running: _Entry | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._snap_lock = threading.Lock()
        self._last_persist = 0.0
        for job in self.store.list(JobStatus.QUEUED, limit=None):
            self._entries[job.id] = _Entry(job)
            self._pending.append(job.id)
        self._snapshot = ProgressSnapshot(pending_count=len(self._pending))

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the worker thread (a daemon, so a stuck runner cannot keep the process alive).

        After a ``stop()`` whose worker has not exited yet (a runner ignoring the stop flag), the old worker is
        told to keep serving instead of starting a second one: there is never more than one per queue.
        """
        with self._lock:
            self._stopping = False
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._work, name=f"easel-jobs-{self.name}", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop the worker; the running job is asked to stop and ends failed (see module doc).

        Returns True when the worker has exited within ``timeout``.
        """
        with self._lock:
            self._stopping = True
            if self._running is not None and self._running.ctx is not None:
                self._running.ctx.request_stop()
            self._wakeup.notify_all()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # -- submitting and reading ------------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        job_id: str | None = None,
        source: str = "api",
        id_field: str = "job_id",
    ) -> Job:
        """Persist a job, then wake the worker. ``job_id`` is a client-forced id (A1111 ``force_task_id``):
        its format and uniqueness are checked (a UserInputError naming ``id_field``).
        """
        if not kind or not isinstance(kind, str):
            raise ValueError("kind must be a non-empty string")
        job_id = new_job_id() if job_id is None else validate_job_id(job_id, field=id_field)
        with self._lock:
            job = self.store.insert(job_id, kind, payload, source=source, id_field=id_field)
            self._entries[job.id] = _Entry(job)
            self._pending.append(job.id)
            self._update_snapshot(pending_count=len(self._pending))
            self._wakeup.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        """Latest snapshot (live progress for the running job), or None if unknown or pruned."""
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is not None:
                return entry.ctx.live_job() if entry.ctx is not None else entry.job
        return self.store.get(job_id)

    def list(
        self,
        status: JobStatus | Iterable[JobStatus] | None = None,
        limit: int | None = 100,
        *,
        offset: int = 0,
        newest_first: bool = False,
    ) -> builtins.list[Job]:
        """Jobs in FIFO order (or newest first), the running one with live progress."""
        jobs = self.store.list(status, limit=limit, offset=offset, newest_first=newest_first)
        current = self.current()
        if current is None:
            return jobs
        return [current if job.id == current.id else job for job in jobs]

    def pending_ids(self) -> builtins.list[str]:
        """Ids of queued jobs in the order they will run (``/internal/pending-tasks``)."""
        with self._lock:
            return builtins.list(self._pending)

    def position(self, job_id: str) -> int | None:
        """0 for the running job, 1 for the next to run, ...; None when the job is not waiting or running."""
        with self._lock:
            if self._running is not None and self._running.job.id == job_id:
                return 0
            try:
                return self._pending.index(job_id) + 1
            except ValueError:
                return None

    def current(self) -> Job | None:
        """The running job with live progress, or None when idle."""
        with self._lock:
            entry = self._running
            if entry is None or entry.ctx is None:
                return None
            return entry.ctx.live_job()

    def progress(self) -> ProgressSnapshot:
        """The live progress view; lock-free (one attribute read), safe to call from any thread at any rate."""
        return self._snapshot

    # -- control ---------------------------------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job (at once) or the running one (the runner stops within one step).

        False when the job is unknown or already finished.
        """
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None:
                return False
            if entry.ctx is not None:
                entry.ctx.request_cancel()
                self._update_snapshot(cancelling=True)
                return True
            self._pending.remove(job_id)
            final = entry.job.model_copy(update={"status": JobStatus.CANCELLED, "finished_at": time.time()})
            self.store.finish(final)
            del self._entries[job_id]
            self._update_snapshot(pending_count=len(self._pending))
        self._announce_final(entry, final)
        return True

    def interrupt(self) -> bool:
        """A1111 ``/interrupt``: stop the running job but keep what it finished (see ``JobContext``)."""
        with self._lock:
            if self._running is None or self._running.ctx is None:
                return False
            self._running.ctx.request_interrupt()
            self._update_snapshot(interrupted=True)
        return True

    def skip(self) -> bool:
        """A1111 ``/skip``: the running job abandons its current image and goes on with the next."""
        with self._lock:
            if self._running is None or self._running.ctx is None:
                return False
            self._running.ctx.request_skip()
            self._update_snapshot(skipped=True)
        return True

    # -- waiting ---------------------------------------------------------------------------------------------

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job finishes; its final snapshot. NotFoundError if unknown, TimeoutError on timeout."""
        with self._lock:
            entry = self._entries.get(job_id)
        if entry is None:
            return self._finished_or_missing(job_id)
        if not entry.done.wait(timeout):
            raise TimeoutError(f"job {job_id} did not finish within {timeout} s")
        assert entry.final is not None
        return entry.final

    async def wait_async(self, job_id: str, timeout: float | None = None) -> Job:
        """Await the job's end without blocking the event loop (resolved by the worker via the loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is not None:
                future: asyncio.Future[Job] = loop.create_future()
                entry.async_waiters.append((loop, future))
        if entry is None:
            return self._finished_or_missing(job_id)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"job {job_id} did not finish within {timeout} s") from None
        finally:
            with self._lock:
                entry.async_waiters = [(lp, fut) for lp, fut in entry.async_waiters if fut is not future]

    def _finished_or_missing(self, job_id: str) -> Job:
        job = self.store.get(job_id)
        if job is None:
            raise NotFoundError(f"job {job_id!r} not found")
        return job

    def subscribe(self, job_id: str) -> Subscription:
        """Progress events of a job, starting with its current state and ending with a final event.

        A finished job yields just its final event. NotFoundError if unknown.
        """
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is not None:
                sub = Subscription(job_id, maxsize=self.subscription_maxsize, on_close=self._unsubscriber(entry))
                sub.publish(self._event(entry, entry.ctx if entry.ctx is not None else entry.job))
                entry.subscribers.append(sub)
                return sub
        job = self._finished_or_missing(job_id)
        sub = Subscription(job_id, maxsize=self.subscription_maxsize)
        sub.publish(_final_event(job, index=0))
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()

    def _unsubscriber(self, entry: _Entry) -> Callable[[Subscription], None]:
        def remove(sub: Subscription) -> None:
            with self._lock:
                if sub in entry.subscribers:
                    entry.subscribers.remove(sub)

        return remove

    # -- worker ----------------------------------------------------------------------------------------------

    def _work(self) -> None:
        log.info("job worker %r started", self.name)
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    break
                job_id = self._pending.popleft()
                entry = self._entries[job_id]
                try:
                    started = time.time()
                    self.store.mark_running(job_id, started)
                except Exception:
                    log.exception("job %s could not be marked running; it stays queued", job_id)
                    self._pending.appendleft(job_id)
                    self._wakeup.wait(1.0)
                    continue
                job = entry.job.model_copy(update={"status": JobStatus.RUNNING, "started_at": started})
                entry.job = job
                entry.ctx = JobContext(job, self._on_report)
                self._running = entry
                self._reset_snapshot(
                    job_id=job.id, kind=job.kind, active=True, started_at=started, pending_count=len(self._pending)
                )
            self._last_persist = time.monotonic()
            self._publish(entry, job)
            try:
                self._run(entry)
            except Exception:  # the worker must survive anything, even a store failure
                log.exception("job worker %r: unexpected failure around job %s", self.name, job_id)
        log.info("job worker %r stopped", self.name)

    def _run(self, entry: _Entry) -> None:
        ctx = entry.ctx
        assert ctx is not None
        job = ctx.job
        result: dict[str, Any] | None = None
        failure: str | None = None
        failure_info: dict[str, Any] | None = None
        raised_cancel = False
        try:
            returned = self.runner(job, ctx)
            if returned is not None and not isinstance(returned, dict):
                raise TypeError(f"runner returned {type(returned).__name__}, expected a dict")
            result = dict(returned or {})
            json.dumps(result, allow_nan=False)  # fail here, as this job's error, not later in the store
        except JobCancelled:
            raised_cancel = True
        except EaselError as exc:
            failure = exc.message
            failure_info = {"status": exc.status_code, "name": exc.error_name, "field": getattr(exc, "field", None)}
        except Exception as exc:
            log.exception("job %s (%s) failed with an internal error", job.id, job.kind)
            result = None
            failure = f"internal error: {type(exc).__name__}; see the server log for job {job.id}"
            failure_info = {"status": 500, "name": "InternalError", "field": None}
        # Precedence: a server stop reads like a crash; then the runner's own error; then cancel; then success.
        if ctx.stopping:
            status, error, failure_info = JobStatus.FAILED, INTERRUPTED_MESSAGE, dict(INTERRUPTED_INFO)
        elif failure is not None:
            status, error = JobStatus.FAILED, failure
        elif raised_cancel or ctx.cancelled:
            status, error, failure_info = JobStatus.CANCELLED, None, None
        else:
            status, error, failure_info = JobStatus.SUCCEEDED, None, None
            if ctx.interrupted:
                result = {**(result or {}), "interrupted": True}
        update: dict[str, Any] = {
            "status": status,
            "error": error,
            "error_info": failure_info,
            "result": result,
            "finished_at": time.time(),
            "eta_seconds": None,
        }
        if status is JobStatus.SUCCEEDED and not ctx.interrupted:
            update["progress"] = 1.0
        final = ctx.live_job().model_copy(update=update)
        with self._lock:
            try:
                self.store.finish(final)
            except Exception:  # still release waiters below: they get the final state from memory
                log.exception("the final state of job %s could not be saved", job.id)
            self._entries.pop(job.id, None)
            self._running = None
            self._reset_snapshot(pending_count=len(self._pending))
        self._announce_final(entry, final)
        log.info("job %s (%s) %s", job.id, job.kind, status.value)
        self.store.prune()

    def _announce_final(self, entry: _Entry, final: Job) -> None:
        with self._lock:
            entry.final = final
            waiters, entry.async_waiters = entry.async_waiters, []
            subscribers = builtins.list(entry.subscribers)
            entry.subscribers.clear()
            index = entry.event_index
        entry.done.set()
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future, final)
            except RuntimeError:  # that loop is closed: nobody awaits any more
                pass
        event = _final_event(final, index=index)
        for sub in subscribers:
            sub.publish(event)

    # -- progress --------------------------------------------------------------------------------------------

    def _on_report(self, ctx: JobContext, preview: Any | None) -> None:
        """Called by JobContext.report on every step: memory only, plus a rare SQLite checkpoint."""
        entry = self._running
        if entry is None or entry.ctx is not ctx:
            return  # a late report from a job that has already finished
        with self._snap_lock:
            old = self._snapshot
            self._snapshot = ProgressSnapshot(
                job_id=old.job_id,
                kind=old.kind,
                active=old.active,
                progress=ctx.progress,
                eta_seconds=ctx.eta_seconds,
                step=ctx.step,
                total_steps=ctx.total_steps,
                batch_no=ctx.batch_no,
                batch_count=ctx.batch_count,
                textinfo=ctx.textinfo,
                preview=old.preview if preview is None else preview,
                preview_id=old.preview_id if preview is None else old.preview_id + 1,
                started_at=old.started_at,
                pending_count=old.pending_count,
                interrupted=old.interrupted,
                skipped=ctx.skip_requested,
                cancelling=old.cancelling,
            )
        if entry.subscribers:
            self._publish(entry, None, preview)
        interval = self.progress_persist_interval
        if interval is not None and time.monotonic() - self._last_persist >= interval:
            self._last_persist = time.monotonic()
            try:
                self.store.save_progress(ctx.live_job())
            except Exception:
                log.exception("progress checkpoint of job %s failed", ctx.job.id)

    def _event(self, entry: _Entry, job: Job | JobContext, preview: Any | None = None) -> JobEvent:
        """The next event of a job from a snapshot, or from the running job's context (cheaper per step)."""
        index = entry.event_index
        entry.event_index += 1
        return JobEvent(
            job_id=entry.job.id,
            index=index,
            status=entry.job.status,
            progress=job.progress,
            step=job.step,
            total_steps=job.total_steps,
            batch_no=job.batch_no,
            batch_count=job.batch_count,
            eta_seconds=job.eta_seconds,
            textinfo=job.textinfo,
            preview=preview,
        )

    def _publish(self, entry: _Entry, job: Job | None, preview: Any | None = None) -> None:
        with self._lock:
            source = job if job is not None else entry.ctx
            if not entry.subscribers or source is None:
                return
            event = self._event(entry, source, preview)
            subscribers = builtins.list(entry.subscribers)
        for sub in subscribers:
            sub.publish(event)

    def _update_snapshot(self, **changes: Any) -> None:
        with self._snap_lock:
            self._snapshot = dataclasses.replace(self._snapshot, **changes)

    def _reset_snapshot(self, **fields: Any) -> None:
        """A fresh snapshot (a job started or ended); keeps ``preview_id`` increasing across jobs."""
        with self._snap_lock:
            self._snapshot = ProgressSnapshot(preview_id=self._snapshot.preview_id, **fields)


def _final_event(job: Job, *, index: int) -> JobEvent:
    return JobEvent(
        job_id=job.id,
        index=index,
        status=job.status,
        progress=job.progress,
        step=job.step,
        total_steps=job.total_steps,
        batch_no=job.batch_no,
        batch_count=job.batch_count,
        eta_seconds=None,
        textinfo=job.textinfo,
        final=True,
        job=job,
    )
