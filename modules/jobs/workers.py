"""Workers: what runs a job once the queue has picked it. The queue drives each worker from a thread of its own.

A worker is either the in-process :class:`LocalWorker` (the default: the runner is called on the driving thread)
or a remote one (``modules.jobs.ray_workers``: a Ray actor that owns one device). The queue only needs the small
:class:`Worker` protocol: run one job with its context, say whether it is ready for the next, and describe itself
(node, pid, device, loaded models) for ``/sdapi/v2/workers`` and for model affinity.

A worker that disappears while it runs a job (its process killed, its node gone) raises :class:`WorkerLost`; the
queue then gives the job back to the FIFO as its next attempt (see ``JobStore.release``). Any other exception is
the job's own failure.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from modules.jobs.context import JobContext
from modules.jobs.models import Job, RunnerResult

Runner = Callable[[Job, JobContext], "RunnerResult | None"]
"""Runs one job on the device; returns the JSON-able result (image paths, info...)."""


class WorkerLost(Exception):
    """The worker went away while it ran a job (process killed, node removed); the job did not fail itself."""


class WorkerState(str, Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


@dataclass(frozen=True)
class WorkerDescription:
    """What a worker reports about itself after start-up and after every job."""

    node: str
    pid: int | None
    device: str
    loaded_models: tuple[str, ...] = ()
    free_memory: int | None = None  # bytes free on its device; None where the device cannot tell


@dataclass(frozen=True)
class WorkerInfo:
    """One row of ``GET /sdapi/v2/workers``: the worker's description plus the queue's view of it."""

    id: str
    state: WorkerState
    description: WorkerDescription
    jobs_done: int = 0
    current_job: str | None = None
    restarts: int = 0


class Worker(Protocol):
    id: str
    idle_check_seconds: float | None
    """How often an idle worker's driver calls :meth:`wait_ready` to notice its death (None: never)."""

    def wait_ready(self, timeout: float) -> bool:
        """Block up to ``timeout`` s until the worker can take a job; False if it cannot tell yet (starting).
        WorkerLost when it is known to be gone (its process died; it may be restarting)."""
        ...

    def execute(self, job: Job, ctx: JobContext) -> RunnerResult | None:
        """Run ``job`` to its end, reporting through ``ctx`` and obeying its flags; WorkerLost if the worker died."""
        ...

    def describe(self) -> WorkerDescription:
        """The latest description (cheap: no round-trip to a remote worker)."""
        ...

    def close(self) -> None:
        ...


@dataclass
class LocalWorker:
    """The in-process worker: the runner runs on the queue's driving thread, on this process's device."""

    runner: Runner
    id: str = "local"
    idle_check_seconds: float | None = None  # it lives as long as this process
    device: Callable[[], str] = lambda: "in-process"
    models: Callable[[], Iterable[str]] = lambda: ()
    _node: str = field(default_factory=socket.gethostname)

    def wait_ready(self, timeout: float) -> bool:
        return True

    def execute(self, job: Job, ctx: JobContext) -> RunnerResult | None:
        return self.runner(job, ctx)

    def describe(self) -> WorkerDescription:
        return WorkerDescription(node=self._node, pid=os.getpid(), device=self.device(),
                                 loaded_models=tuple(self.models()))

    def close(self) -> None:
        pass
