"""The job model: one FIFO queue, persisted in SQLite, run by workers that each own one device."""

from modules.jobs.context import JobContext
from modules.jobs.models import (
    Job,
    JobEvent,
    JobStatus,
    JobSummary,
    JsonObject,
    ProgressSnapshot,
    RunnerResult,
    validate_job_id,
)
from modules.jobs.queue import JobQueue
from modules.jobs.store import INTERRUPTED_MESSAGE, WORKER_LOST_MESSAGE, JobStore
from modules.jobs.subscription import Subscription
from modules.jobs.workers import LocalWorker, Runner, Worker, WorkerDescription, WorkerInfo, WorkerLost, WorkerState

__all__ = [
    "INTERRUPTED_MESSAGE",
    "Job",
    "JobContext",
    "JobEvent",
    "JobQueue",
    "JobStatus",
    "JobStore",
    "JobSummary",
    "JsonObject",
    "LocalWorker",
    "ProgressSnapshot",
    "Runner",
    "RunnerResult",
    "Subscription",
    "WORKER_LOST_MESSAGE",
    "Worker",
    "WorkerDescription",
    "WorkerInfo",
    "WorkerLost",
    "WorkerState",
    "validate_job_id",
]
