"""One FIFO job queue, run by one or more workers: every generation in Easel runs through it.

API handlers, the UI and scripts call :meth:`JobQueue.submit` and then wait, poll or subscribe; only the
workers run jobs, so no request handler ever holds a device. The queue is generic: the worker's runner (plugged
in by the composition root) turns a job's ``kind`` and ``payload`` into a JSON-able result.

The pieces: :class:`~modules.jobs.store.JobStore` keeps durable state (order, leases, attempts, results);
:class:`~modules.jobs.dispatch.Dispatcher` picks the job an idle worker takes; ``modules.jobs.live`` keeps what
only this process has (waiters, subscribers, the v1 progress view); :mod:`modules.jobs.workers` runs jobs;
:class:`~modules.jobs.driver.WorkerDriver` is the thread per worker that pulls a job when its worker is idle,
claims it in the store (a lease for one attempt), runs it and writes its end. This class is the facade the API,
the UI and scripts use. By default there is one in-process worker; ``set_workers`` puts remote ones (Ray actors)
in its place.

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
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from modules.core.errors import NotFoundError
from modules.jobs.dispatch import Dispatcher, ModelOf, no_model
from modules.jobs.driver import QueueState, WorkerDriver
from modules.jobs.live import LiveJob, final_event
from modules.jobs.models import Job, JobStatus, ProgressSnapshot, new_job_id, validate_job_id
from modules.jobs.store import JobStore
from modules.jobs.subscription import Subscription
from modules.jobs.workers import LocalWorker, Runner, Worker, WorkerInfo

log = logging.getLogger(__name__)

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
        self.subscription_maxsize = subscription_maxsize
        self._shared = QueueState(self.store, Dispatcher(model_of=model_of, fairness_seconds=fairness_seconds),
                                  progress_persist_interval)
        shared = self._shared
        self._lock = shared.lock
        self._dispatcher = shared.dispatcher
        self._entries = shared.entries
        self._running = shared.running
        self._board = shared.board
        self._drivers: list[WorkerDriver] = []
        for job in self.store.list(JobStatus.QUEUED, limit=None):
            self._entries[job.id] = LiveJob(job)
            self._dispatcher.add(job)
        self._board.set_pending(len(self._dispatcher))
        if runner is not None:
            self.set_workers([LocalWorker(runner)])

    @property
    def progress_persist_interval(self) -> float | None:
        """Seconds between SQLite checkpoints of a running job's progress (None: never)."""
        return self._shared.progress_persist_interval

    @progress_persist_interval.setter
    def progress_persist_interval(self, value: float | None) -> None:
        self._shared.progress_persist_interval = value

    # -- lifecycle -------------------------------------------------------------------------------------------

    def set_workers(self, workers: Sequence[Worker]) -> None:
        """Choose who runs the jobs (before :meth:`start`): the in-process worker, or remote ones."""
        with self._lock:
            if self.running:
                raise RuntimeError("set_workers() needs a stopped queue")
            for driver in self._drivers:
                driver.worker.close()
            self._drivers = [WorkerDriver(self._shared, worker, self.name) for worker in workers]

    def start(self) -> None:
        """Spawn one driver thread per worker (daemons, so a stuck runner cannot keep the process alive).

        After a ``stop()`` whose drivers have not exited yet (a runner ignoring the stop flag), the old drivers
        are told to keep serving instead of starting second ones: there is never more than one per worker.
        """
        with self._lock:
            if not self._drivers:
                raise RuntimeError("the queue has no workers: pass a runner or call set_workers()")
            self._shared.stopping = False
            for driver in self._drivers:
                driver.start()

    def stop(self, timeout: float | None = 10.0) -> bool:
        """Stop the drivers; running jobs are asked to stop and end failed (see module doc).

        Returns True when every driver has exited within ``timeout``.
        """
        with self._lock:
            self._shared.stopping = True
            for entry in self._running.values():
                if entry.ctx is not None:
                    entry.ctx.request_stop()
            self._shared.wakeup.notify_all()
            threads = [driver.thread for driver in self._drivers if driver.thread is not None]
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    def close_workers(self) -> None:
        """Release the workers' resources (remote actors) after :meth:`stop`."""
        with self._lock:
            for driver in self._drivers:
                driver.worker.close()

    @property
    def running(self) -> bool:
        """True while a driver thread is alive."""
        return any(driver.alive for driver in self._drivers)

    def workers(self) -> builtins.list[WorkerInfo]:
        """Every worker with its state, current job and loaded models (``GET /sdapi/v2/workers``)."""
        with self._lock:
            drivers = list(self._drivers)
        return [driver.info() for driver in drivers]

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
            self._shared.wakeup.notify_all()
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
