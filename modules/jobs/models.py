"""The job model: what a queued unit of work is, the events it emits, and the live progress view.

``Job`` is an immutable snapshot (a frozen pydantic model) so that it can be handed across threads and
processes and serialised by the API as is; the queue builds a fresh snapshot whenever state changes instead of
mutating one. It is the one description of the job record: the SQLite table (``modules.jobs.record``) and the
API's job view (built on :class:`JobSummary`) are derived from its fields.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from modules.core.errors import UserInputError

if TYPE_CHECKING:
    from PIL import Image

JOB_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-()]{1,64}$")
"""Client-chosen ids (A1111's ``force_task_id``, e.g. ``task(abc123)``) must match this."""


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for the three terminal states: the job will never change again."""
        return self in _FINISHED


_FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
FINISHED_STATUSES: frozenset[JobStatus] = _FINISHED


JsonObject = dict[str, JsonValue]
"""A job's payload and result: JSON objects, stored as text in SQLite."""

RunnerResult = dict[str, object]
"""What a runner returns: checked to be JSON (it becomes ``Job.result``) before the queue stores it."""


class JobSummary(BaseModel):
    """The fields of a job that clients see under the same name (the API's job view extends this class)."""

    model_config = ConfigDict(frozen=True)

    id: str
    seq: int = Field(description="FIFO order: assigned by the store at submission, never reused")
    source: str = "api"
    status: JobStatus = JobStatus.QUEUED
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    progress: float = 0.0
    step: int = 0
    total_steps: int = 0
    batch_no: int = 0
    batch_count: int = 1
    textinfo: str | None = None
    error: str | None = None
    attempt: int = Field(0, description="1 for the first run, +1 each time a lost worker returned it to the queue")
    worker: str | None = Field(None, description="the worker holding the job's lease (the last one that ran it)")


class Job(JobSummary):
    """Snapshot of one job: the one description of the job record (see the module doc)."""

    kind: str
    payload: JsonObject = Field(default_factory=dict)
    eta_seconds: float | None = None
    # How the error reads over HTTP: {"status": 422, "name": "ValidationError", "field": "steps"}; None for
    # jobs that did not fail or were written before the queue kept it (their status is inferred from `error`).
    error_info: JsonObject | None = None
    result: JsonObject | None = None

    @property
    def finished(self) -> bool:
        return self.status.finished


def new_job_id() -> str:
    return uuid.uuid4().hex


def validate_job_id(job_id: str, *, field: str = "job_id") -> str:
    """Check the format of a client-chosen id; uniqueness is checked by the store at insert time."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        raise UserInputError(field, "must be 1-64 characters of A-Z, a-z, 0-9, '_', '-', '(' and ')'")
    return job_id


@dataclass(frozen=True)
class JobEvent:
    """One message to a subscriber of a job (the SSE stream of ``/sdapi/v2/jobs/{id}/events``).

    ``index`` numbers the events of one job from 0 so that a client can tell the order and notice drops
    (a slow subscriber loses intermediate progress events, never the final one). ``preview`` is whatever
    the runner reported (a PIL image from processing); the API encodes it. ``job`` is set on the final event
    (``final=True``) and carries the finished snapshot with result or error.
    """

    job_id: str
    index: int
    status: JobStatus
    progress: float
    step: int
    total_steps: int
    batch_no: int
    batch_count: int
    eta_seconds: float | None
    textinfo: str | None = None
    preview: Image.Image | None = None
    final: bool = False
    job: Job | None = None


@dataclass(slots=True)
class ProgressSnapshot:
    """What ``/sdapi/v1/progress`` and ``/internal/progress`` need, replaced whole on every update.

    The queue swaps in a new instance (an atomic attribute store) and never mutates one it has published, so
    readers never lock; treat it as read-only. (Not ``frozen``: a frozen dataclass costs ~10x more to build,
    and one is built on every sampler step.)
    ``batch_no``/``batch_count`` are A1111's ``job_no``/``job_count`` (iterations of the current job);
    ``pending_count`` is the number of queued jobs behind the running one. ``preview_id`` increases whenever a
    new preview image arrives (the UI's ``id_live_preview``).
    """

    job_id: str | None = None
    kind: str | None = None
    active: bool = False
    progress: float = 0.0
    eta_seconds: float | None = None
    step: int = 0
    total_steps: int = 0
    batch_no: int = 0
    batch_count: int = 0
    textinfo: str | None = None
    preview: Image.Image | None = None
    preview_id: int = 0
    started_at: float | None = None
    pending_count: int = 0
    interrupted: bool = False
    skipped: bool = False
    cancelling: bool = False
