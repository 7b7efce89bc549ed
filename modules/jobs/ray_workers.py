"""Remote workers on Ray: each worker is a Ray actor that owns one device and runs Easel's generation core.

Imported only when the server is started with ``--workers`` or ``--ray-address`` (Ray is an optional
dependency, ``requirements-ray.txt``). The queue in the API process stays the source of truth: a
:class:`RayWorker` is driven by the queue like the in-process worker, one job at a time, pulled when idle.

What crosses to the actor: the :class:`~modules.jobs.models.Job` (its payload is JSON) and a per-job
``context`` object that the composition root chooses (Easel sends its current options, so an options change in
the API process applies to the next job on every worker). What comes back: a :class:`RemoteReply` with the
runner's result, the files it wrote and anything else the runtime packs into ``extra``; the API process's
``accept`` callback stores them exactly as a local run would.

While a job runs the driver polls the actor (``poll_seconds``) for progress and the latest preview and
forwards cancel, interrupt, skip and server stop to it; these calls run beside the job because the actor is
threaded (``max_concurrency``). Retries are Easel's, not Ray's: the actor is restarted by Ray when its process
dies (``max_restarts=-1``) but no task is ever retried (``max_task_retries=0``); a run whose actor died raises
:class:`~modules.jobs.workers.WorkerLost` and the queue gives the job back to the FIFO as its next attempt.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError

from modules.core.atomic import atomic_write_bytes
from modules.core.errors import EaselError, JobCancelled
from modules.jobs.context import JobContext
from modules.jobs.models import Job, RunnerResult
from modules.jobs.workers import WorkerDescription, WorkerLost

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

NAMESPACE = "easel"
POLL_SECONDS = 0.1
IDLE_CHECK_SECONDS = 1.0


class WorkerRuntime(Protocol):
    """What runs inside the actor: built there by the factory named in :class:`RayWorker`."""

    def run(self, job: Job, ctx: JobContext, context: object) -> RemoteReply:
        ...

    def device(self) -> str:
        ...

    def loaded_models(self) -> tuple[str, ...]:
        ...

    def free_memory(self) -> int | None:
        ...


@dataclass
class RemoteReply:
    """What a finished run sends back: the result, the files it wrote and runtime-specific ``extra`` data."""

    result: RunnerResult | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    extra: object = None
    # set instead of result when the job failed or was cancelled on the worker
    cancelled: bool = False
    error: str | None = None
    error_status: int = 500
    error_name: str = "InternalError"
    error_field: str | None = None
    internal: bool = False
    description: WorkerDescription | None = None


@dataclass(frozen=True)
class RemoteProgress:
    step: int
    total_steps: int
    batch_no: int
    batch_count: int
    textinfo: str | None
    preview: Image.Image | None
    preview_id: int


class RemoteJobError(EaselError):
    """A job's own error on a worker, as the worker described it (status, name and field carry over)."""

    def __init__(self, message: str, status_code: int, error_name: str, field: str | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error_name = error_name
        self.field = field


class RemoteInternalError(Exception):
    """An unexpected failure inside a worker (its traceback is in that worker's log)."""


class RuntimeFactory(Protocol):
    def __call__(self, *args: object) -> WorkerRuntime:
        ...


def load_factory(spec: str) -> RuntimeFactory:
    """``"package.module:function"`` -> the function (imported in the actor's process)."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"worker runtime factory must be 'module:function', got {spec!r}")
    factory: RuntimeFactory = getattr(importlib.import_module(module_name), name)
    return factory


class WorkerActor:
    """The actor's class (made remote by :func:`start_workers`). One job at a time; poll/control run beside it."""

    def __init__(self, worker_id: str, factory: str, args: tuple[object, ...]) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.worker_id = worker_id
        self.runtime = load_factory(factory)(*args)
        self._lock = threading.Lock()
        self._ctx: JobContext | None = None
        self._preview: Image.Image | None = None
        self._preview_id = 0

    def describe(self) -> WorkerDescription:
        return WorkerDescription(node=f"{socket.gethostname()} ({ray.get_runtime_context().get_node_id()[:8]})",
                                 pid=os.getpid(), device=self.runtime.device(),
                                 loaded_models=self.runtime.loaded_models(), free_memory=self.runtime.free_memory())

    def run(self, job: Job, context: object) -> RemoteReply:
        ctx = JobContext(job, self._on_report)
        with self._lock:
            self._ctx, self._preview = ctx, None
        try:
            reply = self.runtime.run(job, ctx, context)
        except JobCancelled:
            reply = RemoteReply(cancelled=True)
        except EaselError as exc:
            reply = RemoteReply(error=exc.message, error_status=exc.status_code, error_name=exc.error_name,
                                error_field=exc.field)
        except Exception as exc:
            log.exception("job %s failed with an internal error on worker %s", job.id, self.worker_id)
            reply = RemoteReply(error=f"{type(exc).__name__}: {exc}", internal=True)
        finally:
            with self._lock:
                self._ctx = None
        reply.description = self.describe()
        return reply

    def _on_report(self, ctx: JobContext, preview: Image.Image | None) -> None:
        if preview is not None:
            with self._lock:
                self._preview, self._preview_id = preview, self._preview_id + 1

    def poll(self, job_id: str, seen_preview_id: int) -> RemoteProgress | None:
        """The running job's progress; the preview only when it is newer than ``seen_preview_id``."""
        with self._lock:
            ctx = self._ctx
            if ctx is None or ctx.job.id != job_id:
                return None
            preview = self._preview if self._preview_id > seen_preview_id else None
            return RemoteProgress(ctx.step, ctx.total_steps, ctx.batch_no, ctx.batch_count, ctx.textinfo, preview,
                                  self._preview_id)

    def control(self, job_id: str, action: str) -> bool:
        """Forward ``cancel``, ``interrupt``, ``stop`` or ``skip`` to the running job if it is ``job_id``."""
        with self._lock:
            ctx = self._ctx
        if ctx is None or ctx.job.id != job_id:
            return False
        {"cancel": ctx.request_cancel, "interrupt": ctx.request_interrupt, "stop": ctx.request_stop,
         "skip": ctx.request_skip}[action]()
        return True


Accept = Callable[[Job, RemoteReply], "RunnerResult | None"]


def accept_result(job: Job, reply: RemoteReply) -> RunnerResult | None:
    """The default ``accept``: the result as the worker returned it (for runtimes that write no files)."""
    return reply.result


def store_files(results_root: Path) -> Accept:
    """An ``accept`` that writes the reply's files under ``results_root/<job id>/`` (atomically, as a local run
    writes them) and returns the result."""

    def accept(job: Job, reply: RemoteReply) -> RunnerResult | None:
        folder = results_root / job.id
        for name, data in reply.files.items():
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise RemoteInternalError(f"worker sent a file with an unsafe name {name!r}")
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / name, data)
        return reply.result

    return accept


class RayWorker:
    """The queue's handle on one actor (see the module doc). ``context`` is called once per job."""

    def __init__(self, worker_id: str, actor: ray.actor.ActorHandle[WorkerActor], *, accept: Accept = accept_result,
                 context: Callable[[], object] = lambda: None, poll_seconds: float = POLL_SECONDS) -> None:
        self.id = worker_id
        self.actor = actor
        self.accept = accept
        self.context = context
        self.poll_seconds = poll_seconds
        self.idle_check_seconds: float | None = IDLE_CHECK_SECONDS
        self._description = WorkerDescription(node="?", pid=None, device="starting")
        self._ready_ref: ray.ObjectRef[WorkerDescription] | None = None

    def wait_ready(self, timeout: float) -> bool:
        """Ping the actor (its ``describe``); a restarting actor answers once its runtime is built again."""
        if self._ready_ref is None:
            self._ready_ref = self.actor.describe.remote()
        try:
            self._description = ray.get(self._ready_ref, timeout=timeout)
        except GetTimeoutError:
            return False
        except RayError as exc:  # died: restarting (unavailable) or gone for good
            self._ready_ref = None
            raise WorkerLost(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
        self._ready_ref = None
        return True

    def describe(self) -> WorkerDescription:
        return self._description

    def execute(self, job: Job, ctx: JobContext) -> RunnerResult | None:
        try:
            reply = self._run(job, ctx)
        except RayTaskError as exc:  # the actor's own code raised outside the runtime (a bug, not a lost worker)
            raise RemoteInternalError(str(exc)) from exc
        except RayError as exc:  # the actor died: process killed, node removed
            raise WorkerLost(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
        if reply.description is not None:
            self._description = reply.description
        if reply.cancelled:
            raise JobCancelled(job.id)
        if reply.internal:
            raise RemoteInternalError(reply.error or "failed on the worker")
        if reply.error is not None:
            raise RemoteJobError(reply.error, reply.error_status, reply.error_name, reply.error_field)
        return self.accept(job, reply)

    def _run(self, job: Job, ctx: JobContext) -> RemoteReply:
        ref: ray.ObjectRef[RemoteReply] = self.actor.run.remote(job, self.context())
        sent: set[str] = set()
        seen_preview = 0
        last: tuple[int, int, int, int, str | None] | None = None
        while True:
            done, _ = ray.wait([ref], timeout=self.poll_seconds)
            if done:
                reply: RemoteReply = ray.get(ref)
                return reply
            self._forward(job.id, ctx, sent)
            try:
                progress = ray.get(self.actor.poll.remote(job.id, seen_preview), timeout=max(1.0, self.poll_seconds))
            except GetTimeoutError:
                continue
            except RayError:
                reply = ray.get(ref)  # the run fails the same way; that is what tells the queue
                return reply
            if progress is None:
                continue
            state = (progress.step, progress.total_steps, progress.batch_no, progress.batch_count, progress.textinfo)
            if state != last or progress.preview is not None:
                last, seen_preview = state, progress.preview_id
                ctx.report(progress.step, progress.total_steps, batch_no=progress.batch_no,
                           batch_count=progress.batch_count, preview=progress.preview, textinfo=progress.textinfo)

    def _forward(self, job_id: str, ctx: JobContext, sent: set[str]) -> None:
        wanted = {"cancel": ctx.cancelled, "interrupt": ctx.interrupted, "stop": ctx.stopping}
        for action, on in wanted.items():
            if on and action not in sent:
                sent.add(action)
                self.actor.control.remote(job_id, action)
        if ctx.consume_skip():
            self.actor.control.remote(job_id, "skip")

    def close(self) -> None:
        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # already gone, or Ray already shut down
            log.debug("worker %s could not be killed", self.id, exc_info=True)


# -- starting workers ---------------------------------------------------------------------------------------


def connect(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None) -> None:
    """Join the cluster at ``address`` (``HOST:PORT``, or ``auto``), or start a private one on this machine.

    The private cluster binds to loopback and has no dashboard; a cluster joined by address keeps Ray's own
    token authentication and bind settings (see docs/SCALE-OUT.md).
    """
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
    else:
        ray.init(address="local", namespace=NAMESPACE, num_cpus=num_cpus, num_gpus=num_gpus,
                 include_dashboard=False, _node_ip_address="127.0.0.1", logging_level=logging.WARNING,
                 log_to_driver=False)


def cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


def worker_count(requested: str) -> int:
    """``auto``: one per GPU in the cluster, or one where there is none; else the number asked for."""
    if requested == "auto":
        return max(1, cluster_gpus())
    return int(requested)


def start_workers(count: int, factory: str, args: tuple[object, ...] = (), *, accept: Accept = accept_result,
                  context: Callable[[], object] = lambda: None, gpus_per_worker: float | None = None,
                  resources: dict[str, float] | None = None, prefix: str = "ray",
                  poll_seconds: float = POLL_SECONDS) -> list[RayWorker]:
    """Create ``count`` actors running ``factory(*args)`` and their queue handles.

    Each worker asks for one GPU when the cluster has GPUs (so Ray gives every actor a device of its own and
    spreads them over the nodes); on a CPU-only cluster workers reserve nothing. ``resources`` (Ray custom
    resources) pins workers to the nodes that offer them.
    """
    if gpus_per_worker is None:
        gpus_per_worker = 1 if cluster_gpus() else 0
    remote_class = ray.remote(WorkerActor)
    workers = []
    for index in range(count):
        worker_id = f"{prefix}-{index}"
        options = remote_class.options(max_restarts=-1, max_task_retries=0, max_concurrency=4, num_cpus=0,
                                       num_gpus=gpus_per_worker, resources=resources or {},
                                       scheduling_strategy="SPREAD")
        actor = cast("ray.actor.ActorHandle[WorkerActor]", options.remote(worker_id, factory, args))
        workers.append(RayWorker(worker_id, actor, accept=accept, context=context, poll_seconds=poll_seconds))
    return workers


def pid_of(worker: RayWorker, timeout: float = 60.0) -> int:
    """The worker process's pid (waits for it to be ready): for tests and the benchmark that kill one."""
    description = cast(WorkerDescription, ray.get(worker.actor.describe.remote(), timeout=timeout))
    assert description.pid is not None
    return description.pid
