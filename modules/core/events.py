"""Typed progress events, emitted by processing and read by the job queue, the API and the UI."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image


@dataclass(frozen=True)
class ProgressEvent:
    """One sampler step (or a phase change) of a running job.

    ``preview`` is a PIL image when a live preview was computed for this step, else None.
    """

    step: int
    total_steps: int
    batch_no: int = 0
    batch_count: int = 1
    preview: Image.Image | None = None
    textinfo: str | None = None
