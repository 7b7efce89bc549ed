"""Where long work learns that its job should stop, without being handed the job.

The job runner binds the running job's stop flags to the worker thread (:func:`bound_to`); any code that runs
inside that job (the denoising loop, a VAE tile, an upscaler tile, a ControlNet preprocessor, a face, one
iteration of a script's loop) asks :func:`stop_requested` or calls :func:`checkpoint` between units of work.
The flags themselves live on the job's context (``modules.jobs.context.JobContext``): ``should_stop()`` is True
on cancel, A1111 interrupt and server stop; ``check()`` raises ``JobCancelled`` on cancel and server stop only.

:func:`checkpoint` raises ``JobCancelled`` on *any* stop request: it is meant for the inside of one unit whose
partial result is useless (half a decoded image). The caller that owns a whole image or a whole batch catches
it and keeps what it finished (A1111's interrupt keeps the finished images; the queue turns a cancel into the
``cancelled`` status whatever the runner returns).

Outside a job (tests calling the processor directly, the request thread) nothing is bound and every call here
is a no-op.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from modules.core.errors import JobCancelled


class StopFlags(Protocol):
    def should_stop(self) -> bool: ...

    def check(self) -> None: ...


_CURRENT: contextvars.ContextVar[StopFlags | None] = contextvars.ContextVar("easel_stop_flags", default=None)


@contextmanager
def bound_to(flags: StopFlags) -> Iterator[None]:
    """Make ``flags`` the stop flags of the work run in this context (the job runner's thread)."""
    token = _CURRENT.set(flags)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def bound() -> bool:
    """True inside a job's runner (stop checks can do something here)."""
    return _CURRENT.get() is not None


def stop_requested() -> bool:
    """True when the job running in this context was cancelled, interrupted or the server is stopping."""
    flags = _CURRENT.get()
    return flags is not None and flags.should_stop()


def abort_requested() -> bool:
    """True when the job must end without a result (cancel, server stop), not merely stop early (interrupt)."""
    flags = _CURRENT.get()
    if flags is None:
        return False
    try:
        flags.check()
    except JobCancelled:
        return True
    return False


def check_abort() -> None:
    """Raise ``JobCancelled`` on cancel or server stop; an interrupt lets the caller return what it has."""
    flags = _CURRENT.get()
    if flags is not None:
        flags.check()


def checkpoint() -> None:
    """Raise ``JobCancelled`` on any stop request (see the module doc); call it between units of work."""
    flags = _CURRENT.get()
    if flags is not None and flags.should_stop():
        flags.check()
        raise JobCancelled("interrupted")
