"""Behaviour of the job queue: order, control (cancel/interrupt/skip), failures, waiting, events, progress."""

from __future__ import annotations

import asyncio
import logging
import statistics
import threading
import time

import pytest

from modules.core.errors import NotFoundError, UserInputError
from modules.jobs import INTERRUPTED_MESSAGE, JobEvent, JobStatus


def test_fifo_under_concurrent_submitters(make_queue, runner):
    queue = make_queue()
    barrier = threading.Barrier(8)
    submitted: list = []
    lock = threading.Lock()

    def client(n: int) -> None:
        barrier.wait()
        for i in range(5):
            job = queue.submit("txt2img", {"client": n, "i": i, "steps": 2}, source="api-v1")
            with lock:
                submitted.append(job)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    finished = [queue.wait(job.id, timeout=10) for job in submitted]
    assert len(finished) == 40 and all(job.status is JobStatus.SUCCEEDED for job in finished)
    by_seq = [job.id for job in sorted(submitted, key=lambda job: job.seq)]
    assert runner.executed == by_seq
    assert len(set(runner.executed)) == 40
    assert [job.started_at for job in sorted(finished, key=lambda job: job.seq)] == sorted(
        job.started_at for job in finished
    )
    # each client's own jobs keep their submission order too
    for n in range(8):
        mine = [job.payload["i"] for job in sorted(finished, key=lambda job: job.seq) if job.payload["client"] == n]
        assert mine == [0, 1, 2, 3, 4]
    assert queue.store.count(JobStatus.SUCCEEDED) == 40
    assert queue.progress().pending_count == 0


def test_cancel_queued_job(make_queue, runner):
    queue = make_queue()
    first = queue.submit("txt2img", {"steps": 3, "pause_at": [0, 1]})
    second = queue.submit("txt2img", {"steps": 3})
    assert runner.reached.wait(5)

    assert queue.cancel(second.id) is True
    cancelled = queue.get(second.id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished_at is not None
    assert queue.wait(second.id, timeout=1).status is JobStatus.CANCELLED
    assert queue.cancel(second.id) is False  # already finished
    assert queue.cancel("no-such-job") is False

    runner.proceed.set()
    assert queue.wait(first.id, timeout=5).status is JobStatus.SUCCEEDED
    assert runner.executed == [first.id]


def test_cancel_running_job_stops_within_one_step(make_queue, runner):
    queue = make_queue()
    job = queue.submit("txt2img", {"steps": 1000, "pause_at": [0, 2]})
    assert runner.reached.wait(5)
    assert queue.current().id == job.id

    assert queue.cancel(job.id) is True
    assert queue.progress().cancelling is True
    runner.proceed.set()
    final = queue.wait(job.id, timeout=5)

    assert final.status is JobStatus.CANCELLED
    assert runner.steps_done[job.id] == 2  # the next step's check() stopped it
    assert final.step == 2 and final.error is None
    assert queue.current() is None


def test_interrupt_returns_the_images_finished_so_far(make_queue, runner):
    queue = make_queue()
    job = queue.submit("txt2img", {"steps": 4, "batch": 3, "pause_at": [1, 2]})
    assert runner.reached.wait(5)

    assert queue.interrupt() is True
    assert queue.progress().interrupted is True
    runner.proceed.set()
    final = queue.wait(job.id, timeout=5)

    assert final.status is JobStatus.SUCCEEDED
    assert final.result == {"images": [f"{job.id}-0.png"], "interrupted": True}
    assert final.progress < 1.0  # the job did not run to the end
    assert queue.interrupt() is False  # nothing running any more


def test_skip_drops_only_the_current_image(make_queue, runner):
    queue = make_queue()
    job = queue.submit("txt2img", {"steps": 3, "batch": 3, "pause_at": [1, 1]})
    assert runner.reached.wait(5)

    assert queue.skip() is True
    assert queue.progress().skipped is True
    runner.proceed.set()
    final = queue.wait(job.id, timeout=5)

    assert final.status is JobStatus.SUCCEEDED
    assert final.result == {"images": [f"{job.id}-0.png", f"{job.id}-2.png"]}
    assert runner.skip_seen_after[job.id] is False  # consumed once, then reset
    assert queue.skip() is False


def test_runner_errors_fail_the_job_and_the_worker_survives(make_queue, runner, caplog):
    queue = make_queue()
    user = queue.submit("txt2img", {"raise": "user"})
    internal = queue.submit("txt2img", {"raise": "internal"})
    after = queue.submit("txt2img", {"steps": 2})

    with caplog.at_level(logging.ERROR, logger="modules.jobs.queue"):
        user_final = queue.wait(user.id, timeout=5)
        internal_final = queue.wait(internal.id, timeout=5)
        after_final = queue.wait(after.id, timeout=5)

    assert user_final.status is JobStatus.FAILED
    assert user_final.error == "steps: must be at most 150"
    assert internal_final.status is JobStatus.FAILED
    assert internal_final.error.startswith("internal error: RuntimeError")
    assert internal.id in internal_final.error
    logged = [record for record in caplog.records if internal.id in record.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is logged with the job id
    assert "boom" not in internal_final.error  # internals stay in the log
    assert after_final.status is JobStatus.SUCCEEDED
    assert queue.running


def test_runner_must_return_json(make_queue):
    queue = make_queue(run=lambda job, ctx: {"image": object()})
    job = queue.submit("txt2img", {})
    final = queue.wait(job.id, timeout=5)
    assert final.status is JobStatus.FAILED and final.error.startswith("internal error: TypeError")


def test_position_and_pending(make_queue, runner):
    queue = make_queue()
    first = queue.submit("txt2img", {"steps": 2, "pause_at": [0, 1]})
    assert runner.reached.wait(5)
    second = queue.submit("img2img", {"steps": 1})
    third = queue.submit("extras", {"steps": 1})

    assert [queue.position(job.id) for job in (first, second, third)] == [0, 1, 2]
    assert queue.pending_ids() == [second.id, third.id]
    assert queue.progress().pending_count == 2
    assert queue.position("unknown") is None
    queue.cancel(second.id)
    assert queue.position(third.id) == 1
    assert queue.progress().pending_count == 1
    assert [job.id for job in queue.list(JobStatus.QUEUED)] == [third.id]
    assert queue.list(JobStatus.RUNNING)[0].step == 1  # live progress overlays the stored row

    runner.proceed.set()
    queue.wait(third.id, timeout=5)
    assert queue.position(first.id) is None
    assert [job.id for job in queue.list()] == [first.id, second.id, third.id]
    assert [job.id for job in queue.list(newest_first=True, limit=2)] == [third.id, second.id]


def test_forced_ids_are_validated_and_unique(make_queue):
    queue = make_queue(start=False)
    job = queue.submit("txt2img", {}, job_id="task(abc-1_2)", id_field="force_task_id")
    assert job.id == "task(abc-1_2)"
    with pytest.raises(UserInputError) as duplicate:
        queue.submit("txt2img", {}, job_id="task(abc-1_2)", id_field="force_task_id")
    assert duplicate.value.field == "force_task_id"
    for bad in ("", "x" * 65, "a b", "a/b", "ünï"):
        with pytest.raises(UserInputError):
            queue.submit("txt2img", {}, job_id=bad)
    assert queue.store.count() == 1
    assert len(queue.submit("txt2img", {}).id) == 32  # uuid4 hex


def test_wait_timeout_and_unknown(make_queue, runner):
    queue = make_queue()
    job = queue.submit("txt2img", {"steps": 2, "pause_at": [0, 1]})
    assert runner.reached.wait(5)
    with pytest.raises(TimeoutError):
        queue.wait(job.id, timeout=0.05)
    with pytest.raises(NotFoundError):
        queue.wait("missing")
    runner.proceed.set()
    assert queue.wait(job.id, timeout=5).status is JobStatus.SUCCEEDED
    assert queue.wait(job.id).status is JobStatus.SUCCEEDED  # a finished job answers at once


def test_wait_async_does_not_block_the_event_loop(make_queue):
    queue = make_queue()
    job = queue.submit("txt2img", {"steps": 10, "step_time": 0.02})

    async def main() -> tuple:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        final = await queue.wait_async(job.id)
        again = await queue.wait_async(job.id)
        with pytest.raises(NotFoundError):
            await queue.wait_async("missing")
        task.cancel()
        return final, again, ticks

    final, again, ticks = asyncio.run(main())
    assert final.status is JobStatus.SUCCEEDED and again.id == job.id
    assert ticks >= 5  # the loop kept running while the job did


def test_wait_async_timeout(make_queue, runner):
    queue = make_queue()
    job = queue.submit("txt2img", {"pause_at": [0, 1]})
    assert runner.reached.wait(5)
    with pytest.raises(TimeoutError):
        asyncio.run(queue.wait_async(job.id, timeout=0.05))
    runner.proceed.set()
    assert asyncio.run(queue.wait_async(job.id, timeout=5)).status is JobStatus.SUCCEEDED


def _check_stream(events: list[JobEvent], job_id: str, steps: int) -> None:
    assert [event.index for event in events] == list(range(len(events)))
    assert events[0].status is JobStatus.QUEUED
    assert events[1].status is JobStatus.RUNNING and events[1].step == 0
    progress = [event for event in events[2:-1]]
    assert [event.step for event in progress] == list(range(1, steps + 1))
    assert [event.progress for event in progress] == sorted(event.progress for event in progress)
    assert events[-1].final and events[-1].status is JobStatus.SUCCEEDED
    assert events[-1].job is not None and events[-1].job.result == {"images": [f"{job_id}-0.png"]}
    assert sum(event.final for event in events) == 1


def test_subscribe_receives_ordered_progress_and_a_final_event(make_queue):
    queue = make_queue(start=False)
    job = queue.submit("txt2img", {"steps": 5})
    sub = queue.subscribe(job.id)
    queue.start()
    events = list(sub)
    _check_stream(events, job.id, 5)
    assert sub.finished and sub.dropped == 0

    late = list(queue.subscribe(job.id))  # a finished job: just the final event
    assert len(late) == 1 and late[0].final and late[0].job.status is JobStatus.SUCCEEDED
    with pytest.raises(NotFoundError):
        queue.subscribe("missing")


def test_subscribe_async_iteration(make_queue):
    queue = make_queue(start=False)
    job = queue.submit("txt2img", {"steps": 4, "step_time": 0.005})

    async def main() -> list[JobEvent]:
        received = []
        async with queue.subscribe(job.id) as sub:
            queue.start()
            async for event in sub:
                received.append(event)
        return received

    _check_stream(asyncio.run(main()), job.id, 4)


def test_unsubscribe_ends_the_stream(make_queue, runner):
    queue = make_queue()
    job = queue.submit("txt2img", {"steps": 3, "pause_at": [0, 1]})
    assert runner.reached.wait(5)
    sub = queue.subscribe(job.id)
    assert sub.get(timeout=1).status is JobStatus.RUNNING
    queue.unsubscribe(sub)
    assert sub.get(timeout=1) is None and list(sub) == []
    runner.proceed.set()
    queue.wait(job.id, timeout=5)


def test_slow_subscriber_drops_progress_but_not_the_final_event(make_queue):
    queue = make_queue(start=False)
    queue.subscription_maxsize = 4
    job = queue.submit("txt2img", {"steps": 50})
    sub = queue.subscribe(job.id)
    queue.start()
    queue.wait(job.id, timeout=5)
    events = list(sub)
    assert len(events) == 4 and events[-1].final and sub.dropped > 0
    assert [event.index for event in events] == sorted(event.index for event in events)


def test_progress_snapshot_is_fast_and_live(make_queue, runner):
    queue = make_queue()
    job = queue.submit("txt2img", {"steps": 100_000, "step_time": 0.0002, "batch": 2})
    deadline = time.monotonic() + 5
    while queue.progress().step < 3 and time.monotonic() < deadline:
        time.sleep(0.001)

    durations, steps = [], []
    for _ in range(2000):
        started = time.perf_counter()
        snapshot = queue.progress()
        durations.append(time.perf_counter() - started)
        steps.append(snapshot.step)
    assert statistics.median(durations) < 0.001
    assert snapshot.active and snapshot.job_id == job.id and snapshot.kind == "txt2img"
    assert snapshot.total_steps == 100_000 and snapshot.batch_count == 2
    assert 0 < snapshot.progress < 1 and snapshot.eta_seconds is not None and snapshot.eta_seconds > 0
    assert snapshot.textinfo == "image 0"
    assert steps[-1] >= steps[0]

    queue.cancel(job.id)
    queue.wait(job.id, timeout=5)
    idle = queue.progress()
    assert not idle.active and idle.job_id is None and idle.progress == 0


def test_progress_is_checkpointed_to_the_store_not_every_step(make_queue, runner):
    queue = make_queue(start=False)
    queue.progress_persist_interval = 0.0  # every report, to make the checkpoint observable
    job = queue.submit("txt2img", {"steps": 5, "pause_at": [0, 3]})
    queue.start()
    assert runner.reached.wait(5)
    assert queue.store.get(job.id).step == 3
    runner.proceed.set()
    queue.wait(job.id, timeout=5)

    queue.progress_persist_interval = 3600.0
    runner.reached.clear()
    runner.proceed.clear()
    job = queue.submit("txt2img", {"steps": 5, "pause_at": [0, 3]})
    assert runner.reached.wait(5)
    assert queue.store.get(job.id).step == 0  # only the live view moved
    assert queue.get(job.id).step == 3
    runner.proceed.set()
    assert queue.wait(job.id, timeout=5).step == 5


def test_stop_fails_the_running_job_and_keeps_the_queue(make_queue, runner):
    queue = make_queue()
    running = queue.submit("txt2img", {"steps": 100, "pause_at": [0, 1]})
    assert runner.reached.wait(5)
    queued = queue.submit("txt2img", {"steps": 1})

    stopper = threading.Thread(target=queue.stop, kwargs={"timeout": 5})
    stopper.start()
    deadline = time.monotonic() + 5
    while not queue._running[running.id].ctx.stopping and time.monotonic() < deadline:
        time.sleep(0.001)
    runner.proceed.set()
    stopper.join()

    assert not queue.running
    final = queue.get(running.id)
    assert final.status is JobStatus.FAILED and final.error == INTERRUPTED_MESSAGE
    assert queue.get(queued.id).status is JobStatus.QUEUED
    assert runner.executed == [running.id]

    runner.reached.clear()
    queue.start()  # a stopped queue starts again and runs what was left
    assert queue.wait(queued.id, timeout=5).status is JobStatus.SUCCEEDED
