"""The narrow object a runner sees while its job runs: report progress, and learn whether to stop or skip.

Three ways to stop a running job, with different outcomes (the queue decides the final status):

- **cancel** (``DELETE /sdapi/v2/jobs/{id}``): :meth:`JobContext.check` raises ``JobCancelled`` and
  :meth:`JobContext.should_stop` is True; the job ends ``cancelled``.
- **interrupt** (A1111 ``/sdapi/v1/interrupt``): only :meth:`should_stop` is True (``check`` does not raise),
  and :attr:`interrupted` is set. The runner finishes the current image as it sees fit and *returns* what it
  has; the job ends ``succeeded`` with ``"interrupted": True`` in its result, as A1111 returns the images
  finished so far.
- **server stop** (:meth:`JobQueue.stop`): like cancel for the runner; the job ends ``failed`` with the
  same message a crash would leave (see ``modules.jobs.store.INTERRUPTED_MESSAGE``).

**skip** (``/sdapi/v1/skip``) asks the runner to abandon only the current image of a batch:
:meth:`consume_skip` returns True once per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from modules.core.errors import JobCancelled
from modules.core.events import ProgressEvent
from modules.jobs.models import Job

if TYPE_CHECKING:
    from PIL import Image


class JobContext:
    """Handed to the runner with each job; its methods are cheap enough to call on every sampler step.

    Flags are set from other threads (API handlers) and read by the worker thread; each is a single attribute
    store, so no lock is needed except for the read-and-reset of skip.
    """

    def __init__(self, job: Job, on_report: Callable[[JobContext, Image.Image | None], None] | None = None) -> None:
        self.job = job
        self._on_report = on_report
        self.cancelled = False
        self.interrupted = False
        self.stopping = False
        self._skip = False
        self._skip_lock = threading.Lock()
        # live progress, written only by the worker thread
        self.step = 0
        self.total_steps = 0
        self.batch_no = 0
        self.batch_count = 1
        self.progress = 0.0
        self.eta_seconds: float | None = None
        self.textinfo: str | None = None
        self._eta_origin: tuple[float, int] | None = None  # (monotonic time, units done) of the ETA baseline

    # -- flags (set by the queue) ----------------------------------------------------------------------------

    def request_cancel(self) -> None:
        self.cancelled = True

    def request_interrupt(self) -> None:
        self.interrupted = True

    def request_stop(self) -> None:
        self.stopping = True

    def request_skip(self) -> None:
        with self._skip_lock:
            self._skip = True

    @property
    def skip_requested(self) -> bool:
        return self._skip

    # -- runner side -----------------------------------------------------------------------------------------

    def should_stop(self) -> bool:
        """True when the runner should stop at the next step (cancelled, interrupted or server stopping)."""
        return self.cancelled or self.interrupted or self.stopping

    def check(self) -> None:
        """Raise ``JobCancelled`` if the job was cancelled or the server is stopping (not on interrupt)."""
        if self.cancelled or self.stopping:
            raise JobCancelled(self.job.id)

    def consume_skip(self) -> bool:
        """True once per skip request: the runner abandons the current image and goes on with the next."""
        with self._skip_lock:
            skip, self._skip = self._skip, False
        return skip

    def report(
        self,
        step: int,
        total: int,
        *,
        batch_no: int = 0,
        batch_count: int = 1,
        preview: Image.Image | None = None,
        textinfo: str | None = None,
    ) -> None:
        """Record progress: ``step`` of ``total`` within image batch ``batch_no`` of ``batch_count``.

        The ETA is the elapsed time per step unit since the first report, times the units left; measuring from
        the first report rather than the job start keeps model loading out of the per-step rate.
        """
        total = max(int(total), 0)
        batch_count = max(int(batch_count), 1)
        step = min(max(int(step), 0), total) if total else 0
        batch_no = min(max(int(batch_no), 0), batch_count - 1)
        units_total = total * batch_count
        units_done = batch_no * total + step
        now = time.monotonic()
        origin = self._eta_origin
        if origin is None or units_done < origin[1]:  # first report, or a new phase restarted the count
            origin = self._eta_origin = (now, units_done)
        if units_done > origin[1] and units_total:
            rate = (now - origin[0]) / (units_done - origin[1])
            self.eta_seconds = rate * (units_total - units_done)
        else:
            self.eta_seconds = None
        self.step, self.total_steps = step, total
        self.batch_no, self.batch_count = batch_no, batch_count
        self.progress = units_done / units_total if units_total else 0.0
        if textinfo is not None:
            self.textinfo = textinfo
        if self._on_report is not None:
            self._on_report(self, preview)

    def report_event(self, event: ProgressEvent) -> None:
        """Forward a processing ``ProgressEvent`` (the sampler step callback's value)."""
        self.report(
            event.step,
            event.total_steps,
            batch_no=event.batch_no,
            batch_count=event.batch_count,
            preview=event.preview,
            textinfo=event.textinfo,
        )

    def live_job(self) -> Job:
        """The job snapshot with the latest live progress."""
        return self.job.model_copy(
            update={
                "progress": self.progress,
                "step": self.step,
                "total_steps": self.total_steps,
                "batch_no": self.batch_no,
                "batch_count": self.batch_count,
                "eta_seconds": self.eta_seconds,
                "textinfo": self.textinfo,
            }
        )
