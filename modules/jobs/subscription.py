"""A subscriber's view of one job's progress: a bounded, thread-safe event queue, iterable sync or async.

The worker thread publishes; a request handler (SSE) or a UI thread consumes. Progress events describe state
(step N of M), not deltas, so when a consumer falls behind the oldest undelivered progress events are dropped
to bound memory; the final event is never dropped and always comes last.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator

from modules.jobs.models import JobEvent


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Subscription:
    """Events of one job, ending with an event whose ``final`` is True.

    ``for event in sub`` blocks the calling thread; ``async for event in sub`` awaits without blocking the event
    loop (the worker wakes it with ``loop.call_soon_threadsafe``). Both stop after the final event or after
    :meth:`close`. ``dropped`` counts progress events discarded because the consumer was too slow.
    """

    def __init__(self, job_id: str, *, maxsize: int = 256, on_close: Callable[[Subscription], None] | None = None):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.job_id = job_id
        self.maxsize = maxsize
        self.dropped = 0
        self._on_close = on_close
        self._cond = threading.Condition()
        self._events: deque[JobEvent] = deque()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._final_queued = False
        self._final_delivered = False
        self._closed = False

    # -- producer side (the queue) ---------------------------------------------------------------------------

    def publish(self, event: JobEvent) -> None:
        """Queue an event; called by the job queue (any thread). Ignored after the final event or close."""
        with self._cond:
            if self._closed or self._final_queued:
                return
            self._events.append(event)
            if event.final:
                self._final_queued = True
            while len(self._events) > self.maxsize:
                # The final event is only ever the newest one, so the oldest is always a progress event.
                self._events.popleft()
                self.dropped += 1
            self._wake_all()

    def _wake_all(self) -> None:
        self._cond.notify_all()
        waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: its consumer is gone
                pass

    # -- consumer side ---------------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the final event has been handed out, or after close()."""
        return self._final_delivered or self._closed

    def _take(self) -> JobEvent | None:
        event = self._events.popleft()
        if event.final:
            self._final_delivered = True
        return event

    def get(self, timeout: float | None = None) -> JobEvent | None:
        """Next event, blocking up to ``timeout`` s; None on timeout or when the stream has ended."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._events or self.finished, timeout):
                return None
            if self._events and not self._closed:
                return self._take()
            return None

    async def get_async(self, timeout: float | None = None) -> JobEvent | None:
        """Like :meth:`get` but awaits on the running event loop instead of blocking it."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            with self._cond:
                if self._closed or (self._final_delivered and not self._events):
                    return None
                if self._events:
                    return self._take()
                future: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, future))
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                self._discard_waiter(future)
                return None
            try:
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                self._discard_waiter(future)
                return None
            except BaseException:
                self._discard_waiter(future)
                raise

    def _discard_waiter(self, future: asyncio.Future[None]) -> None:
        with self._cond:
            self._async_waiters = [(lp, fut) for lp, fut in self._async_waiters if fut is not future]

    def __iter__(self) -> Iterator[JobEvent]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event
            if event.final:
                return

    def __aiter__(self) -> AsyncIterator[JobEvent]:
        return self

    async def __anext__(self) -> JobEvent:
        event = await self.get_async()
        if event is None:
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Stop receiving events (unsubscribe); wakes any consumer blocked in get()."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._events.clear()
            self._wake_all()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
