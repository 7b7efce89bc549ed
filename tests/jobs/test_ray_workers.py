"""The queue with remote workers on a real local Ray cluster (no mocks of Ray).

The workers run ``cli.simulated_worker``: a runtime that sleeps per step and can hold a job at its first step
until the test creates a file, so "while the job runs" is deterministic. Every test checks that each job ends
exactly once, with its result file in the API process's results folder.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from modules.jobs import JobQueue, JobStatus, JobStore, WorkerState

pytestmark = [pytest.mark.ray, pytest.mark.timeout(120)]

FACTORY = "cli.simulated_worker:sleep_runtime"


def _wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def cluster_queue(ray_cluster, tmp_path) -> Iterator[Callable[..., JobQueue]]:
    from modules.jobs import ray_workers

    built: list[JobQueue] = []

    def make(count: int = 2, *, start: bool = True, store: JobStore | None = None,
             resources: dict[str, float] | None = None, **queue_kwargs) -> JobQueue:
        queue = JobQueue(store or JobStore(tmp_path / "queue.sqlite3"), **queue_kwargs)
        workers = ray_workers.start_workers(count, FACTORY, (0.005,), accept=ray_workers.store_files(
            tmp_path / "results"), resources=resources, prefix=f"q{len(built)}")
        queue.set_workers(workers)
        built.append(queue)
        if start:
            queue.start()
        return queue

    yield make
    for queue in built:
        queue.stop(timeout=10)
        queue.close_workers()
        queue.store.close()


def _result_text(tmp_path: Path, job_id: str) -> str:
    return (tmp_path / "results" / job_id / "000.txt").read_text()


def _ended_once(queue: JobQueue, tmp_path: Path, job_ids: list[str]) -> None:
    for job_id in job_ids:
        job = queue.store.get(job_id)
        assert job.status is JobStatus.SUCCEEDED, (job_id, job.status, job.error)
        assert _result_text(tmp_path, job_id) == f"{job_id} attempt {job.attempt} pid {job.result['pid']}"


def test_jobs_start_in_fifo_order_across_workers_and_come_back_with_their_files(cluster_queue, tmp_path):
    queue = cluster_queue(2)
    # both started before the jobs arrive (on a busy machine one actor can take seconds longer to start, and the
    # other would meanwhile run every job)
    _wait_for(lambda: {info.state for info in queue.workers()} == {WorkerState.IDLE}, timeout=120)
    jobs = [queue.submit("sim", {"steps": 3}) for _ in range(10)]
    finals = [queue.wait(job.id, timeout=60) for job in jobs]

    assert [job.id for job in sorted(finals, key=lambda job: job.started_at)] == [job.id for job in jobs]
    assert {job.worker for job in finals} == {"q0-0", "q0-1"}  # both pulled work
    assert all(job.attempt == 1 and job.progress == 1.0 for job in finals)
    _ended_once(queue, tmp_path, [job.id for job in jobs])
    infos = {info.id: info for info in queue.workers()}
    assert sum(info.jobs_done for info in infos.values()) == 10
    assert {info.state for info in infos.values()} == {WorkerState.IDLE}
    assert all(info.description.device == "simulated" and info.description.pid for info in infos.values())


def test_progress_and_previews_of_a_remote_job_reach_v1_progress_and_subscribers(cluster_queue, tmp_path):
    queue = cluster_queue(1)
    job = queue.submit("sim", {"steps": 40, "step_seconds": 0.02, "previews": True})
    with queue.subscribe(job.id) as sub:
        _wait_for(lambda: queue.progress().job_id == job.id and queue.progress().step > 0)
        snapshot = queue.progress()  # what /sdapi/v1/progress serves
        events = list(sub)
    assert snapshot.active and snapshot.total_steps == 40 and snapshot.textinfo.startswith("step ")
    assert snapshot.preview is not None and snapshot.preview.size == (8, 8) and snapshot.preview_id > 0
    steps = [event.step for event in events if not event.final]
    assert events[-1].final and events[-1].job.status is JobStatus.SUCCEEDED
    assert any(0 < step < 40 for step in steps) and steps == sorted(steps)
    previews = [event.preview for event in events if event.preview is not None]
    assert previews and all(preview.size == (8, 8) for preview in previews)  # SSE ?previews=1 encodes these


def test_a_killed_worker_process_gives_its_job_to_another_worker(cluster_queue, tmp_path):
    queue = cluster_queue(2)
    gate = tmp_path / "gate"
    held = queue.submit("sim", {"steps": 2, "pause_file": str(gate)})
    _wait_for(lambda: Path(f"{gate}.running").exists())
    victim_pid = int(Path(f"{gate}.running").read_text())
    others = [queue.submit("sim", {"steps": 2}) for _ in range(4)]

    os.kill(victim_pid, signal.SIGKILL)
    _wait_for(lambda: queue.get(held.id).attempt == 2)  # requeued at the head, claimed again
    gate.touch()
    final = queue.wait(held.id, timeout=60)

    assert final.status is JobStatus.SUCCEEDED and final.attempt == 2 and final.result["pid"] != victim_pid
    for job in others:
        queue.wait(job.id, timeout=60)
    _ended_once(queue, tmp_path, [held.id] + [job.id for job in others])
    # The dead worker is restarted by Ray and serves again.
    _wait_for(lambda: all(info.state is not WorkerState.DEAD for info in queue.workers()))
    assert sum(info.restarts for info in queue.workers()) == 1


def test_an_idle_worker_death_is_noticed_and_costs_no_job_an_attempt(cluster_queue, tmp_path):
    queue = cluster_queue(1)
    first = queue.wait(queue.submit("sim", {"steps": 1}).id, timeout=60)
    os.kill(first.result["pid"], signal.SIGKILL)
    _wait_for(lambda: queue.workers()[0].restarts == 1)  # noticed while idle, by the driver's health check
    _wait_for(lambda: queue.workers()[0].state is WorkerState.IDLE)  # restarted by Ray
    after = queue.wait(queue.submit("sim", {"steps": 1}).id, timeout=60)
    assert after.status is JobStatus.SUCCEEDED and after.attempt == 1 and after.result["pid"] != first.result["pid"]


def test_a_job_whose_workers_keep_dying_fails_with_worker_lost_after_three_attempts(cluster_queue, tmp_path):
    queue = cluster_queue(1)
    gate = tmp_path / "never"
    doomed = queue.submit("sim", {"steps": 1, "pause_file": str(gate)})
    after = queue.submit("sim", {"steps": 1})
    for attempt in (1, 2, 3):
        _wait_for(lambda attempt=attempt: queue.get(doomed.id).attempt == attempt and Path(f"{gate}.running").exists())
        pid = int(Path(f"{gate}.running").read_text())
        Path(f"{gate}.running").unlink()
        os.kill(pid, signal.SIGKILL)
    final = queue.wait(doomed.id, timeout=60)
    assert final.status is JobStatus.FAILED and final.error.startswith("worker lost") and final.attempt == 3
    assert queue.wait(after.id, timeout=60).status is JobStatus.SUCCEEDED


def test_a_removed_node_gives_its_job_to_a_worker_on_another_node(ray_cluster, cluster_queue, tmp_path):
    node = ray_cluster.add_node(num_cpus=1, resources={"doomed": 1})
    ray_cluster.wait_for_nodes()
    queue = cluster_queue(1, resources={"doomed": 1})
    gate = tmp_path / "gate"
    held = queue.submit("sim", {"steps": 2, "pause_file": str(gate)})
    _wait_for(lambda: Path(f"{gate}.running").exists())
    doomed_pid = int(Path(f"{gate}.running").read_text())
    # a second queue object only to borrow a worker on the head node
    rescue = cluster_queue(1, start=False, store=JobStore(":memory:"))
    survivor = rescue._drivers[0].worker
    rescue._drivers.clear()

    ray_cluster.remove_node(node)
    _wait_for(lambda: queue.get(held.id).status is JobStatus.QUEUED and queue.get(held.id).attempt == 1)
    queue.stop(timeout=10)
    queue.set_workers([survivor])  # the doomed worker cannot come back: its node is gone
    queue.start()
    gate.touch()
    final = queue.wait(held.id, timeout=60)
    assert final.status is JobStatus.SUCCEEDED and final.attempt == 2 and final.result["pid"] != doomed_pid
    _ended_once(queue, tmp_path, [held.id])


def test_cancel_and_interrupt_reach_the_remote_job(cluster_queue, tmp_path):
    queue = cluster_queue(1)
    gate = tmp_path / "never"
    cancelled = queue.submit("sim", {"steps": 2, "pause_file": str(gate)})
    _wait_for(lambda: Path(f"{gate}.running").exists())
    assert queue.cancel(cancelled.id)
    assert queue.wait(cancelled.id, timeout=30).status is JobStatus.CANCELLED
    assert not (tmp_path / "results" / cancelled.id).exists()

    Path(f"{gate}.running").unlink()
    interrupted = queue.submit("sim", {"steps": 2, "pause_file": str(gate)})
    _wait_for(lambda: Path(f"{gate}.running").exists())
    assert queue.interrupt()
    final = queue.wait(interrupted.id, timeout=30)
    assert final.status is JobStatus.SUCCEEDED and final.result["interrupted"] is True
    assert final.result["steps_done"] == 0  # the worker stopped before its first step


def test_model_affinity_and_the_fairness_bound(cluster_queue, tmp_path):
    fairness = [3600.0]
    queue = cluster_queue(1, model_of=lambda job: job.payload.get("model"), fairness_seconds=lambda: fairness[0])
    gate = tmp_path / "gate"
    queue.wait(queue.submit("sim", {"steps": 1, "model": "B"}).id, timeout=60)  # the worker now has B loaded
    assert queue.workers()[0].description.loaded_models == ("B",)

    for round_no, bound in enumerate((3600.0, 0.0)):
        fairness[0] = bound
        gate_n = Path(f"{gate}{round_no}")
        holder = queue.submit("sim", {"steps": 1, "model": "B", "pause_file": str(gate_n)})
        _wait_for(lambda gate_n=gate_n: Path(f"{gate_n}.running").exists())
        wants_a = queue.submit("sim", {"steps": 1, "model": "A"})
        wants_b = queue.submit("sim", {"steps": 1, "model": "B"})
        gate_n.touch()
        finals = [queue.wait(job.id, timeout=60) for job in (holder, wants_a, wants_b)]
        order = [job.id for job in sorted(finals[1:], key=lambda job: job.started_at)]
        if bound:  # within the bound the worker keeps its model and takes the younger B job first
            assert order == [wants_b.id, wants_a.id]
        else:  # the head has waited longer than the bound: FIFO
            assert order == [wants_a.id, wants_b.id]
        queue.wait(queue.submit("sim", {"steps": 1, "model": "B"}).id, timeout=60)  # back to B for round 2


def test_an_api_restart_returns_leased_jobs_and_each_ends_once(cluster_queue, tmp_path):
    path = tmp_path / "queue.sqlite3"
    first = cluster_queue(2)
    gate = tmp_path / "gate"
    held = [first.submit("sim", {"steps": 1, "pause_file": f"{gate}{n}"}) for n in range(2)]
    _wait_for(lambda: all(Path(f"{gate}{n}.running").exists() for n in range(2)))
    waiting = first.submit("sim", {"steps": 1})

    # The API process dies: a new one opens the queue (exclusive=False stands in for the lock the OS released).
    store = JobStore(path, exclusive=False).open()
    assert sorted(job.id for job in store.recovered) == sorted(job.id for job in held)
    first.stop(timeout=10)  # the old process's runs end now; the store refuses their results
    first.close_workers()
    assert all(store.get(job.id).status is JobStatus.QUEUED for job in held)

    second = cluster_queue(2, store=store)
    assert second.pending_ids() == [job.id for job in held] + [waiting.id]
    for n in range(2):
        Path(f"{gate}{n}").touch()
    finals = [second.wait(job.id, timeout=60) for job in (*held, waiting)]
    assert [job.attempt for job in finals] == [2, 2, 1]
    _ended_once(second, tmp_path, [job.id for job in finals])


def test_the_workers_benchmark_measures_throughput_overhead_and_rerun(ray_cluster, tmp_path):
    import json

    from cli import bench

    out = tmp_path / "workers.json"
    assert bench.main(["--workers", "--worker-counts", "1", "2", "--jobs", "6", "--steps", "2",
                       "--step-seconds", "0.01", "--kills", "1", "--out", str(out)]) == 0
    printed = json.loads(out.read_text())
    assert [row["workers"] for row in printed["throughput"]] == [1, 2]
    assert printed["throughput"][0]["speedup"] == 1.0 and all(row["jobs"] == 6 for row in printed["throughput"])
    assert printed["dispatch_overhead_ms"]["jobs"] == 12 and printed["dispatch_overhead_ms"]["p95"] > 0
    assert printed["death_to_rerun_s"]["kills"] == 1 and printed["death_to_rerun_s"]["max"] > 0
