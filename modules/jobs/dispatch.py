"""Which queued job an idle worker takes next: FIFO by ``seq``, bent only by model affinity within a bound.

Workers pull: a job is chosen when a worker is idle, never assigned ahead, so a fast worker never waits behind a
slow one. The rule: an idle worker takes the oldest job whose model it already has loaded (switching models
costs seconds), unless the head of the queue has waited longer than the fairness bound, in which case it takes
the head. A job without a model preference (``model_of`` answers None) suits every worker.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from modules.jobs.models import Job

ModelOf = Callable[[Job], "str | None"]


def no_model(job: Job) -> str | None:
    return None


@dataclass
class Dispatcher:
    """The queued jobs in FIFO order. Not thread-safe: the queue calls it under its lock."""

    model_of: ModelOf = no_model
    fairness_seconds: Callable[[], float] = lambda: 30.0
    _seqs: list[int] = field(default_factory=list)
    _jobs: list[Job] = field(default_factory=list)

    def add(self, job: Job) -> None:
        """Queue a job at its FIFO place (a released job goes back before everything submitted after it)."""
        index = bisect.bisect_left(self._seqs, job.seq)
        self._seqs.insert(index, job.seq)
        self._jobs.insert(index, job)

    def remove(self, job_id: str) -> bool:
        index = self.index(job_id)
        if index is None:
            return False
        del self._seqs[index], self._jobs[index]
        return True

    def index(self, job_id: str) -> int | None:
        return next((index for index, job in enumerate(self._jobs) if job.id == job_id), None)

    def ids(self) -> list[str]:
        return [job.id for job in self._jobs]

    def __len__(self) -> int:
        return len(self._jobs)

    def take(self, loaded_models: Collection[str], now: float | None = None) -> Job | None:
        """Remove and return the job an idle worker with ``loaded_models`` should run; None when none is queued."""
        if not self._jobs:
            return None
        chosen = 0
        head = self._jobs[0]
        waited = (time.time() if now is None else now) - head.created_at
        if loaded_models and waited < self.fairness_seconds():
            for index, job in enumerate(self._jobs):
                model = self.model_of(job)
                if model is None or model in loaded_models:
                    chosen = index
                    break
        del self._seqs[chosen]
        return self._jobs.pop(chosen)
