"""Fixtures for the job queue tests: a real SQLite store in tmp_path and a scripted runner.

The runner is a plain function of the queue's runner protocol (it steps, reports and obeys the stop/skip
flags like processing does); it is not a stand-in for a pipeline, since the queue never sees one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modules.core.errors import UserInputError
from modules.jobs import Job, JobContext, JobQueue, JobStore


class ScriptedRunner:
    """Runs ``payload = {steps, batch, step_time, pause_at: [batch_no, step], raise: "user"|"internal"}``.

    ``pause_at`` makes a job stop after reporting that step until the test sets ``proceed``; the test learns
    that the point was reached from ``reached``. That makes "while a job runs" tests deterministic.
    """

    def __init__(self) -> None:
        self.executed: list[str] = []
        self.steps_done: dict[str, int] = {}
        self.reached = threading.Event()
        self.proceed = threading.Event()
        self.skip_seen_after: dict[str, bool] = {}

    def __call__(self, job: Job, ctx: JobContext) -> dict[str, Any]:
        payload = job.payload
        self.executed.append(job.id)
        if payload.get("raise") == "user":
            raise UserInputError("steps", "must be at most 150")
        if payload.get("raise") == "internal":
            raise RuntimeError("boom")
        steps, batch = int(payload.get("steps", 3)), int(payload.get("batch", 1))
        step_time = float(payload.get("step_time", 0.0))
        pause_at = payload.get("pause_at")
        images: list[str] = []
        self.steps_done[job.id] = 0
        for batch_no in range(batch):
            skipped = False
            for step in range(1, steps + 1):
                ctx.check()
                if ctx.should_stop():
                    return {"images": images}
                if ctx.consume_skip():
                    skipped = True
                    self.skip_seen_after[job.id] = ctx.consume_skip()
                    break
                if step_time:
                    time.sleep(step_time)
                self.steps_done[job.id] += 1
                ctx.report(step, steps, batch_no=batch_no, batch_count=batch, textinfo=f"image {batch_no}")
                if pause_at == [batch_no, step]:
                    self.reached.set()
                    assert self.proceed.wait(10), "test never released the paused job"
            if not skipped:
                images.append(f"{job.id}-{batch_no}.png")
        return {"images": images}


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


QueueFactory = Callable[..., JobQueue]


@pytest.fixture
def make_queue(tmp_path: Path, runner: ScriptedRunner) -> Iterator[QueueFactory]:
    """Build queues over ``tmp_path/queue.sqlite3``; everything built is stopped and closed at teardown."""
    built: list[tuple[JobQueue, JobStore]] = []

    def make(
        *, start: bool = True, run: Callable[[Job, JobContext], Any] | None = None, **store_kwargs: Any
    ) -> JobQueue:
        store = JobStore(tmp_path / "queue.sqlite3", **store_kwargs)
        queue = JobQueue(store, run or runner)
        built.append((queue, store))
        if start:
            queue.start()
        return queue

    yield make
    runner.proceed.set()
    for queue, store in built:
        queue.stop(timeout=5)
        store.close()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One local Ray cluster for the whole session, on loopback, without dashboard: a head node with 2 CPUs.

    Tests that need a node they can remove add one (``cluster.add_node``). Tests using it are marked ``ray``.
    """
    import os

    # Bind every Ray process to 127.0.0.1 (read by Ray when it is imported, so set before the import).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=True,
                      head_node_args={"num_cpus": 2, "include_dashboard": False})
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
