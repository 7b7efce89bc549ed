"""A small bounded pool for CPU-heavy work done on behalf of a request (image decoding, png-info, ControlNet
detect), so that it never runs on the event loop and a flood of such requests queues here instead of taking
every thread of the server (``--max-cpu-workers``)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")


class CpuWork:
    """``await cpu.run(fn, *args)`` runs ``fn`` on one of ``workers`` threads of its own."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="easel-cpu")

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args, **kwargs))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
