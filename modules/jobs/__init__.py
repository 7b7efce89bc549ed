"""The job model: one FIFO queue, persisted in SQLite, run by one worker thread per device."""

from modules.jobs.context import JobContext
from modules.jobs.models import Job, JobEvent, JobStatus, ProgressSnapshot, validate_job_id
from modules.jobs.queue import JobQueue, Runner
from modules.jobs.store import INTERRUPTED_MESSAGE, JobStore
from modules.jobs.subscription import Subscription

__all__ = [
    "INTERRUPTED_MESSAGE",
    "Job",
    "JobContext",
    "JobEvent",
    "JobQueue",
    "JobStatus",
    "JobStore",
    "ProgressSnapshot",
    "Runner",
    "Subscription",
    "validate_job_id",
]
