"""The thread that drives one worker: pull a job when the worker is idle, claim it, run it, record its end.

A :class:`WorkerDriver` per worker shares one :class:`QueueState` with the :class:`~modules.jobs.queue.JobQueue`
facade (the store, the dispatcher, the live jobs, the progress board, under one lock). :func:`execute` turns what
a worker did into the job's final status; a :class:`~modules.jobs.workers.WorkerLost` instead gives the job back
to the queue as its next attempt (see ``JobStore.release``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modules.core.errors import EaselError, JobCancelled
from modules.jobs.context import JobContext
from modules.jobs.dispatch import Dispatcher
from modules.jobs.live import LiveJob, ProgressBoard
from modules.jobs.models import Job, JobStatus, JsonObject, RunnerResult
from modules.jobs.store import INTERRUPTED_INFO, INTERRUPTED_MESSAGE, JobStore
from modules.jobs.workers import Worker, WorkerInfo, WorkerLost, WorkerState

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger("modules.jobs.queue")

READY_POLL_SECONDS = 0.5


@dataclass
class QueueState:
    """What the queue facade and its drivers share. Everything but ``board`` (which has its own lock) is read and
    written under ``lock``; ``wakeup`` is signalled when a job is queued or the queue stops."""

    store: JobStore
    dispatcher: Dispatcher
    progress_persist_interval: float | None = 1.0
    board: ProgressBoard = field(default_factory=ProgressBoard)
    lock: threading.RLock = field(default_factory=threading.RLock)
    wakeup: threading.Condition = field(init=False)
    entries: dict[str, LiveJob] = field(default_factory=dict)
    running: dict[str, LiveJob] = field(default_factory=dict)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.wakeup = threading.Condition(self.lock)


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    error: str | None = None
    error_info: JsonObject | None = None
    result: RunnerResult | None = None


class WorkerDriver:
    """One worker and the daemon thread that feeds it jobs (one at a time)."""

    def __init__(self, shared: QueueState, worker: Worker, queue_name: str) -> None:
        self.shared = shared
        self.worker = worker
        self.queue_name = queue_name
        self.state = WorkerState.STARTING
        self.current_job: str | None = None
        self.jobs_done = 0
        self.restarts = 0
        self.thread: threading.Thread | None = None
        self._last_persist = 0.0

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        """Spawn the thread unless one is still alive (a stopped runner that has not returned yet keeps serving)."""
        if self.alive:
            return
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name=f"easel-jobs-{self.queue_name}-{self.worker.id}")
        self.thread.start()

    def info(self) -> WorkerInfo:
        with self.shared.lock:
            state, current, done, restarts = self.state, self.current_job, self.jobs_done, self.restarts
        return WorkerInfo(id=self.worker.id, state=state, description=self.worker.describe(), jobs_done=done,
                          current_job=current, restarts=restarts)

    def _loop(self) -> None:
        """When the worker is ready and idle, take a job, run it, record its end; until the queue stops."""
        log.info("job worker %r/%s started", self.queue_name, self.worker.id)
        while True:
            if not self._await_ready():
                break
            entry = self._take()
            if entry is None:
                if self.shared.stopping:
                    break
                continue  # idle for a while: check the worker is still there before waiting on
            entry.publish()
            try:
                self._run(entry)
            except Exception:  # the driver must survive anything, even a store failure
                log.exception("job worker %r/%s: unexpected failure around job %s", self.queue_name, self.worker.id,
                              entry.job.id)
        log.info("job worker %r/%s stopped", self.queue_name, self.worker.id)

    def _await_ready(self) -> bool:
        """Wait until the worker can take a job (a restarting one comes back here); False when stopping."""
        while not self.shared.stopping:
            try:
                ready = self.worker.wait_ready(READY_POLL_SECONDS)
            except WorkerLost as exc:  # died while idle (or is still restarting): no job is affected
                with self.shared.lock:
                    if self.state is not WorkerState.DEAD:
                        log.warning("worker %s was lost while idle: %s", self.worker.id, exc)
                        self.state = WorkerState.DEAD
                        self.restarts += 1
                time.sleep(READY_POLL_SECONDS)
                continue
            except Exception:
                log.exception("worker %s could not tell whether it is ready", self.worker.id)
                ready = False
                time.sleep(READY_POLL_SECONDS)
            if ready:
                with self.shared.lock:
                    self.state = WorkerState.IDLE
                return True
        return False

    def _take(self) -> LiveJob | None:
        """Block until a job is queued, claim the one the dispatcher picks for this worker. None when stopping, or
        after the worker's ``idle_check_seconds`` without a job (the driver then checks the worker is alive)."""
        loaded = frozenset(self.worker.describe().loaded_models)
        idle_check = self.worker.idle_check_seconds
        with self.shared.lock:
            while True:
                while not self.shared.dispatcher and not self.shared.stopping:
                    if not self.shared.wakeup.wait(idle_check) and idle_check is not None:
                        return None
                if self.shared.stopping:
                    return None
                job = self.shared.dispatcher.take(loaded)
                assert job is not None
                entry = self.shared.entries[job.id]
                try:
                    claimed = self.shared.store.claim(entry.job, self.worker.id, time.time())
                except Exception:
                    log.exception("job %s could not be claimed; it stays queued", job.id)
                    self.shared.dispatcher.add(entry.job)
                    self.shared.wakeup.wait(1.0)
                    continue
                if claimed is None:  # finished behind the queue's back (cannot happen in one process): drop it
                    log.error("job %s was no longer queued in the store; dropped from the queue", job.id)
                    self.shared.entries.pop(job.id, None)
                    continue
                entry.job = claimed
                entry.worker = self.worker.id
                entry.ctx = JobContext(claimed, self._on_report)
                self.shared.running[job.id] = entry
                self.state, self.current_job = WorkerState.BUSY, job.id
                self.shared.board.started(claimed, len(self.shared.dispatcher))
                self._last_persist = time.monotonic()
                return entry

    def _run(self, entry: LiveJob) -> None:
        ctx = entry.ctx
        assert ctx is not None
        job = ctx.job
        try:
            outcome = execute(self.worker, job, ctx)
        except WorkerLost as exc:
            self._lost(entry, str(exc))
            return
        update: dict[str, object] = {"status": outcome.status, "error": outcome.error,
                                     "error_info": outcome.error_info, "result": outcome.result,
                                     "finished_at": time.time(), "eta_seconds": None}
        if outcome.status is JobStatus.SUCCEEDED and not ctx.interrupted:
            update["progress"] = 1.0
        final = ctx.live_job().model_copy(update=update)
        self._finish(entry, final)

    def _finish(self, entry: LiveJob, final: Job) -> None:
        job = entry.job
        with self.shared.lock:
            try:
                written = self.shared.store.finish(final)
            except Exception:  # still release waiters below: they get the final state from memory
                log.exception("the final state of job %s could not be saved", job.id)
                written = True
            self.shared.entries.pop(job.id, None)
            self.shared.running.pop(job.id, None)
            self.state, self.current_job = WorkerState.IDLE, None
            self.jobs_done += 1
            self.shared.board.ended(job.id, len(self.shared.dispatcher))
        if not written:  # this attempt was given up on: the job's current attempt writes the end
            log.warning("job %s attempt %d ended after it was replaced; its result is discarded", job.id, job.attempt)
            return
        entry.announce_final(final)
        log.info("job %s (%s) %s on %s", job.id, job.kind, final.status.value, self.worker.id)
        self.shared.store.prune()

    def _lost(self, entry: LiveJob, reason: str) -> None:
        """The worker died mid-job: give the job back to the queue as its next attempt (or fail it)."""
        with self.shared.lock:
            self.state, self.current_job = WorkerState.DEAD, None
            self.restarts += 1
            self.shared.running.pop(entry.job.id, None)
            released = self.shared.store.release(entry.job, reason)
            if released is not None and released.status is JobStatus.QUEUED:
                entry.job, entry.ctx, entry.worker = released, None, None
                self.shared.dispatcher.add(released)
                self.shared.wakeup.notify_all()
            else:
                self.shared.entries.pop(entry.job.id, None)
            self.shared.board.ended(entry.job.id, len(self.shared.dispatcher))
        if released is None:
            return
        if released.status is JobStatus.QUEUED:
            entry.publish()
        else:
            entry.announce_final(released)

    def _on_report(self, ctx: JobContext, preview: Image.Image | None) -> None:
        """Called by JobContext.report on every step: memory only, plus a rare SQLite checkpoint."""
        entry = self.shared.running.get(ctx.job.id)
        if entry is None or entry.ctx is not ctx:
            return  # a late report from a job that has already finished
        self.shared.board.report(ctx, preview)
        entry.publish(preview)
        interval = self.shared.progress_persist_interval
        if interval is not None and time.monotonic() - self._last_persist >= interval:
            self._last_persist = time.monotonic()
            try:
                self.shared.store.save_progress(ctx.live_job())
            except Exception:
                log.exception("progress checkpoint of job %s failed", ctx.job.id)


def execute(worker: Worker, job: Job, ctx: JobContext) -> Outcome:
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
        failure_info = {"status": exc.status_code, "name": exc.error_name, "field": exc.field}
    except Exception as exc:
        log.exception("job %s (%s) failed with an internal error", job.id, job.kind)
        failure = f"internal error: {type(exc).__name__}; see the server log for job {job.id}"
        failure_info = {"status": 500, "name": "InternalError", "field": None}
    # Precedence: a server stop reads like a crash; then the runner's own error; then cancel; then success.
    if ctx.stopping:
        return Outcome(JobStatus.FAILED, INTERRUPTED_MESSAGE, dict(INTERRUPTED_INFO))
    if failure is not None:
        return Outcome(JobStatus.FAILED, failure, failure_info)
    if raised_cancel or ctx.cancelled:
        return Outcome(JobStatus.CANCELLED)
    if ctx.interrupted:
        result = {**(result or {}), "interrupted": True}
    return Outcome(JobStatus.SUCCEEDED, result=result)
