"""One FIFO job queue, run by one or more workers: every generation in Easel runs through it.

API handlers, the UI and scripts call :meth:`JobQueue.submit` and then wait, poll or subscribe; only the
workers run jobs, so no request handler ever holds a device. The queue is generic: the worker's runner (plugged
in by the composition root) turns a job's ``kind`` and ``payload`` into a JSON-able result.

The pieces: :class:`~modules.jobs.store.JobStore` keeps durable state (order, leases, attempts, results);
:class:`~modules.jobs.dispatch.Dispatcher` picks the job an idle worker takes; ``modules.jobs.live`` keeps what
only this process has (waiters, subscribers, the v1 progress view); :mod:`modules.jobs.workers` runs jobs. This
class drives them: one thread per worker pulls a job when its worker is idle, claims it in the store (a lease
for one attempt), runs it and writes its end. By default there is one in-process worker; ``set_workers`` puts
remote ones (Ray actors) in its place.

Order is the store's monotonic ``seq``, never wall-clock timestamps. A worker that is lost mid-job
(:class:`~modules.jobs.workers.WorkerLost`) gives its job back to the queue at its FIFO place as the next attempt;
after the store's ``max_attempts`` the job fails with "worker lost".

Lifecycle: ``start()`` spawns the drivers; ``stop(timeout)`` asks the running jobs to stop (the runner sees
``should_stop()``/``check()``), and they end ``failed`` with the message "interrupted: server stopped"; queued
jobs stay queued and run after the next start. The queue does not own the store: the caller closes it after
``stop()``.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modules.core.errors import EaselError, JobCancelled, NotFoundError
from modules.jobs.context import JobContext
from modules.jobs.dispatch import Dispatcher, ModelOf, no_model
from modules.jobs.live import LiveJob, ProgressBoard, final_event
from modules.jobs.models import (
    Job,
    JobStatus,
    JsonObject,
    ProgressSnapshot,
    RunnerResult,
    new_job_id,
    validate_job_id,
)
from modules.jobs.store import INTERRUPTED_INFO, INTERRUPTED_MESSAGE, JobStore
from modules.jobs.subscription import Subscription
from modules.jobs.workers import LocalWorker, Runner, Worker, WorkerInfo, WorkerLost, WorkerState

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

READY_POLL_SECONDS = 0.5


@dataclass
class _Slot:
    """The queue's view of one worker: the thread driving it and what it is doing."""

    worker: Worker
    state: WorkerState = WorkerState.STARTING
    current_job: str | None = None
    jobs_done: int = 0
    restarts: int = 0
    thread: threading.Thread | None = None


@dataclass(frozen=True)
class _Outcome:
    status: JobStatus
    error: str | None = None
    error_info: JsonObject | None = None
    result: RunnerResult | None = None


class JobQueue:
    """FIFO of jobs over a :class:`JobStore`, executed by its workers (one job per worker at a time)."""

    def __init__(
        self,
        store: JobStore,
        runner: Runner | None = None,
        *,
        name: str = "default",
        progress_persist_interval: float | None = 1.0,
        subscription_maxsize: int = 256,
        model_of: ModelOf = no_model,
        fairness_seconds: Callable[[], float] = lambda: 30.0,
    ) -> None:
        self.store = store.open()
        self.name = name
        self.progress_persist_interval = progress_persist_interval
        self.subscription_maxsize = subscription_maxsize
        self._lock = threading.RLock()
        self._wakeup = threading.Condition(self._lock)
        self._dispatcher = Dispatcher(model_of=model_of, fairness_seconds=fairness_seconds)
        self._entries: dict[str, LiveJob] = {}
        self._running: dict[str, LiveJob] = {}
        self._slots: list[_Slot] = []
        self._stopping = False
        self._board = ProgressBoard()
        self._last_persist = 0.0
        for job in self.store.list(JobStatus.QUEUED, limit=None):
            self._entries[job.id] = LiveJob(job)
            self._dispatcher.add(job)
        self._board.set_pending(len(self._dispatcher))
        if runner is not None:
            self.set_workers([LocalWorker(runner)])

    # -- lifecycle -------------------------------------------------------------------------------------------

    def set_workers(self, workers: Sequence[Worker]) -> None:
        """Choose who runs the jobs (before :meth:`start`): the in-process worker, or remote ones."""
        with self._lock:
            if self.running:
                raise RuntimeError("set_workers() needs a stopped queue")
            for slot in self._slots:
                slot.worker.close()
            self._slots = [_Slot(worker) for worker in workers]

    def start(self) -> None:
        """Spawn one driver thread per worker (daemons, so a stuck runner cannot keep the process alive).

        After a ``stop()`` whose drivers have not exited yet (a runner ignoring the stop flag), the old drivers
        are told to keep serving instead of starting second ones: there is never more than one per worker.
        """
        with self._lock:
            if not self._slots:
                raise RuntimeError("the queue has no workers: pass a runner or call set_workers()")
            self._stopping = False
            for slot in self._slots:
                if slot.thread is not None and slot.thread.is_alive():
                    continue
                slot.thread = threading.Thread(target=self._drive, args=(slot,), daemon=True,
                                               name=f"easel-jobs-{self.name}-{slot.worker.id}")
                slot.thread.start()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop the drivers; running jobs are asked to stop and end failed (see module doc).

        Returns True when every driver has exited within ``timeout``.
        """
        with self._lock:
            self._stopping = True
            for entry in self._running.values():
                if entry.ctx is not None:
                    entry.ctx.request_stop()
            self._wakeup.notify_all()
            threads = [slot.thread for slot in self._slots if slot.thread is not None]
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def close_workers(self) -> None:
        """Release the workers' resources (remote actors) after :meth:`stop`."""
        with self._lock:
            for slot in self._slots:
                slot.worker.close()

    @property
    def running(self) -> bool:
        """True while a driver thread is alive."""
        return any(slot.thread is not None and slot.thread.is_alive() for slot in self._slots)

    def workers(self) -> builtins.list[WorkerInfo]:
        """Every worker with its state, current job and loaded models (``GET /sdapi/v2/workers``)."""
        with self._lock:
            slots = [(slot.worker, slot.state, slot.current_job, slot.jobs_done, slot.restarts)
                     for slot in self._slots]
        return [WorkerInfo(id=worker.id, state=state, description=worker.describe(), jobs_done=done,
                           current_job=current, restarts=restarts)
                for worker, state, current, done, restarts in slots]

    # -- submitting and reading ------------------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        payload: Mapping[str, object],
        *,
        job_id: str | None = None,
        source: str = "api",
        id_field: str = "job_id",
    ) -> Job:
        """Persist a job, then wake an idle worker. ``job_id`` is a client-forced id (A1111 ``force_task_id``):
        its format and uniqueness are checked (a UserInputError naming ``id_field``).
        """
        if not kind or not isinstance(kind, str):
            raise ValueError("kind must be a non-empty string")
        job_id = new_job_id() if job_id is None else validate_job_id(job_id, field=id_field)
        with self._lock:
            job = self.store.insert(job_id, kind, payload, source=source, id_field=id_field)
            self._entries[job.id] = LiveJob(job)
            self._dispatcher.add(job)
            self._board.set_pending(len(self._dispatcher))
            self._wakeup.notify_all()
        return job

    def get(self, job_id: str) -> Job | None:
        """Latest snapshot (live progress for a running job), or None if unknown or pruned."""
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is not None:
                return entry.snapshot()
        return self.store.get(job_id)

    def list(
        self,
        status: JobStatus | Iterable[JobStatus] | None = None,
        limit: int | None = 100,
        *,
        offset: int = 0,
        newest_first: bool = False,
    ) -> builtins.list[Job]:
        """Jobs in FIFO order (or newest first), running ones with live progress."""
        jobs = self.store.list(status, limit=limit, offset=offset, newest_first=newest_first)
        with self._lock:
            live = {job_id: entry.snapshot() for job_id, entry in self._running.items()}
        return [live.get(job.id, job) for job in jobs]

    def pending_ids(self) -> builtins.list[str]:
        """Ids of queued jobs in FIFO order (``/internal/pending-tasks``)."""
        with self._lock:
            return self._dispatcher.ids()

    def position(self, job_id: str) -> int | None:
        """0 for a running job, 1 for the next to run, ...; None when the job is not waiting or running."""
        with self._lock:
            if job_id in self._running:
                return 0
            index = self._dispatcher.index(job_id)
            return None if index is None else index + 1

    def current(self) -> Job | None:
        """The oldest running job with live progress, or None when idle."""
        with self._lock:
            if not self._running:
                return None
            return min(self._running.values(), key=lambda entry: entry.job.seq).snapshot()

    def progress(self) -> ProgressSnapshot:
        """The live progress view; lock-free (one attribute read), safe to call from any thread at any rate."""
        return self._board.current

    # -- control ---------------------------------------------------------------------------------------------

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job (at once) or a running one (the runner stops within one step).

        False when the job is unknown or already finished.
        """
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None:
                return False
            if entry.ctx is not None:
                entry.ctx.request_cancel()
                self._board.flag(job_id, cancelling=True)
                return True
            self._dispatcher.remove(job_id)
            final = entry.job.model_copy(update={"status": JobStatus.CANCELLED, "finished_at": time.time()})
            self.store.finish(final)
            del self._entries[job_id]
            self._board.set_pending(len(self._dispatcher))
        entry.announce_final(final)
        return True

    def interrupt(self) -> bool:
        """A1111 ``/interrupt``: stop the running jobs but keep what they finished (see ``JobContext``)."""
        with self._lock:
            for entry in self._running.values():
                assert entry.ctx is not None
                entry.ctx.request_interrupt()
                self._board.flag(entry.job.id, interrupted=True)
            return bool(self._running)

    def skip(self) -> bool:
        """A1111 ``/skip``: the running jobs abandon their current image and go on with the next."""
        with self._lock:
            for entry in self._running.values():
                assert entry.ctx is not None
                entry.ctx.request_skip()
                self._board.flag(entry.job.id, skipped=True)
            return bool(self._running)

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
        """Await the job's end without blocking the event loop (resolved by the driver via the loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._entries.get(job_id)
            future = entry.add_async_waiter(loop) if entry is not None else None
        if entry is None or future is None:
            return self._finished_or_missing(job_id)
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"job {job_id} did not finish within {timeout} s") from None
        finally:
            entry.discard_async_waiter(future)

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
                return entry.subscribe(self.subscription_maxsize)
        job = self._finished_or_missing(job_id)
        sub = Subscription(job_id, maxsize=self.subscription_maxsize)
        sub.publish(final_event(job, index=0))
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()

    # -- the drivers -----------------------------------------------------------------------------------------

    def _drive(self, slot: _Slot) -> None:
        """One worker's loop: when it is ready and idle, take a job, run it, record its end."""
        log.info("job worker %r/%s started", self.name, slot.worker.id)
        while True:
            if not self._await_ready(slot):
                break
            entry = self._take(slot)
            if entry is None:
                break
            entry.publish()
            try:
                self._run(slot, entry)
            except Exception:  # the driver must survive anything, even a store failure
                log.exception("job worker %r/%s: unexpected failure around job %s", self.name, slot.worker.id,
                              entry.job.id)
        log.info("job worker %r/%s stopped", self.name, slot.worker.id)

    def _await_ready(self, slot: _Slot) -> bool:
        """Wait until the worker can take a job (a restarting one comes back here); False when stopping."""
        while not self._stopping:
            try:
                ready = slot.worker.wait_ready(READY_POLL_SECONDS)
            except Exception:
                log.exception("worker %s could not tell whether it is ready", slot.worker.id)
                ready = False
                time.sleep(READY_POLL_SECONDS)
            if ready:
                with self._lock:
                    slot.state = WorkerState.IDLE
                return True
        return False

    def _take(self, slot: _Slot) -> LiveJob | None:
        """Block until a job is queued, claim the one the dispatcher picks for this worker; None when stopping."""
        loaded = frozenset(slot.worker.describe().loaded_models)
        with self._lock:
            while True:
                while not self._dispatcher and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return None
                job = self._dispatcher.take(loaded)
                assert job is not None
                entry = self._entries[job.id]
                try:
                    claimed = self.store.claim(entry.job, slot.worker.id, time.time())
                except Exception:
                    log.exception("job %s could not be claimed; it stays queued", job.id)
                    self._dispatcher.add(entry.job)
                    self._wakeup.wait(1.0)
                    continue
                if claimed is None:  # finished behind the queue's back (cannot happen in one process): drop it
                    log.error("job %s was no longer queued in the store; dropped from the queue", job.id)
                    self._entries.pop(job.id, None)
                    continue
                entry.job = claimed
                entry.worker = slot.worker.id
                entry.ctx = JobContext(claimed, self._on_report)
                self._running[job.id] = entry
                slot.state, slot.current_job = WorkerState.BUSY, job.id
                self._board.started(claimed, len(self._dispatcher))
                self._last_persist = time.monotonic()
                return entry

    def _run(self, slot: _Slot, entry: LiveJob) -> None:
        ctx = entry.ctx
        assert ctx is not None
        job = ctx.job
        try:
            outcome = self._execute(slot.worker, job, ctx)
        except WorkerLost as exc:
            self._lost(slot, entry, str(exc))
            return
        update: dict[str, object] = {"status": outcome.status, "error": outcome.error, "error_info": outcome.error_info,
                              "result": outcome.result, "finished_at": time.time(), "eta_seconds": None}
        if outcome.status is JobStatus.SUCCEEDED and not ctx.interrupted:
            update["progress"] = 1.0
        final = ctx.live_job().model_copy(update=update)
        self._finish(slot, entry, final)

    def _execute(self, worker: Worker, job: Job, ctx: JobContext) -> _Outcome:
        """Run the job and turn what happened into its final status (WorkerLost passes through)."""
        result: RunnerResult | None = None
        failure: str | None = None
        failure_info: JsonObject | None = None
        raised_cancel = False
        try:
            returned = worker.execute(job, ctx)
            if returned is not None and not isinstance(returned, dict):
                raise TypeError(f"runner returned {type(returned).__name__}, expected a dict")
            result = dict(returned or {})
            json.dumps(result, allow_nan=False)  # fail here, as this job's error, not later in the store
        except (JobCancelled, WorkerLost) as exc:
            if isinstance(exc, WorkerLost) and not (ctx.cancelled or ctx.stopping):
                raise
            raised_cancel = True
        except EaselError as exc:
            failure = exc.message
            failure_info = {"status": exc.status_code, "name": exc.error_name, "field": getattr(exc, "field", None)}
        except Exception as exc:
            log.exception("job %s (%s) failed with an internal error", job.id, job.kind)
            failure = f"internal error: {type(exc).__name__}; see the server log for job {job.id}"
            failure_info = {"status": 500, "name": "InternalError", "field": None}
        # Precedence: a server stop reads like a crash; then the runner's own error; then cancel; then success.
        if ctx.stopping:
            return _Outcome(JobStatus.FAILED, INTERRUPTED_MESSAGE, dict(INTERRUPTED_INFO))
        if failure is not None:
            return _Outcome(JobStatus.FAILED, failure, failure_info)
        if raised_cancel or ctx.cancelled:
            return _Outcome(JobStatus.CANCELLED)
        if ctx.interrupted:
            result = {**(result or {}), "interrupted": True}
        return _Outcome(JobStatus.SUCCEEDED, result=result)

    def _finish(self, slot: _Slot, entry: LiveJob, final: Job) -> None:
        job = entry.job
        with self._lock:
            try:
                written = self.store.finish(final)
            except Exception:  # still release waiters below: they get the final state from memory
                log.exception("the final state of job %s could not be saved", job.id)
                written = True
            self._entries.pop(job.id, None)
            self._running.pop(job.id, None)
            slot.state, slot.current_job = WorkerState.IDLE, None
            slot.jobs_done += 1
            self._board.ended(job.id, len(self._dispatcher))
        if not written:  # this attempt was given up on: the job's current attempt writes the end
            log.warning("job %s attempt %d ended after it was replaced; its result is discarded", job.id, job.attempt)
            return
        entry.announce_final(final)
        log.info("job %s (%s) %s on %s", job.id, job.kind, final.status.value, slot.worker.id)
        self.store.prune()

    def _lost(self, slot: _Slot, entry: LiveJob, reason: str) -> None:
        """The worker died mid-job: give the job back to the queue as its next attempt (or fail it)."""
        with self._lock:
            slot.state, slot.current_job = WorkerState.DEAD, None
            slot.restarts += 1
            self._running.pop(entry.job.id, None)
            released = self.store.release(entry.job, reason)
            if released is not None and released.status is JobStatus.QUEUED:
                entry.job, entry.ctx, entry.worker = released, None, None
                self._dispatcher.add(released)
                self._wakeup.notify_all()
            else:
                self._entries.pop(entry.job.id, None)
            self._board.ended(entry.job.id, len(self._dispatcher))
        if released is None:
            return
        if released.status is JobStatus.QUEUED:
            entry.publish()
        else:
            entry.announce_final(released)

    # -- progress --------------------------------------------------------------------------------------------

    def _on_report(self, ctx: JobContext, preview: Image.Image | None) -> None:
        """Called by JobContext.report on every step: memory only, plus a rare SQLite checkpoint."""
        entry = self._running.get(ctx.job.id)
        if entry is None or entry.ctx is not ctx:
            return  # a late report from a job that has already finished
        self._board.report(ctx, preview)
        entry.publish(preview)
        interval = self.progress_persist_interval
        if interval is not None and time.monotonic() - self._last_persist >= interval:
            self._last_persist = time.monotonic()
            try:
                self.store.save_progress(ctx.live_job())
            except Exception:
                log.exception("progress checkpoint of job %s failed", ctx.job.id)
