"""``cli/bench.py --workers``: the job queue's dispatch over Ray workers, with simulated (sleep-per-step) jobs.

It measures the dispatcher, not diffusion: every job sleeps ``steps x step_seconds`` on its worker
(``cli/simulated_worker.py``) and comes back with one small result file, so the numbers say what Easel adds
around a job. On a private local Ray cluster (loopback, no dashboard):

* **throughput**: ``jobs`` jobs through 1, 2 and 4 workers; jobs/s and the speed-up over one worker;
* **dispatch overhead** per job: the time a job holds its worker (claim -> remote run -> result stored) minus
  the time the runtime itself slept; median and p95 over every job of every round;
* **death to rerun**: a worker process is killed (SIGKILL) while it holds a job; the time from the kill until
  that job is running again on another worker, over ``kills`` kills.
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

FACTORY = "cli.simulated_worker:sleep_runtime"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def bench_workers(counts: tuple[int, ...] = (1, 2, 4), *, jobs: int = 48, steps: int = 10,
                  step_seconds: float = 0.02, kills: int = 3) -> dict[str, object]:
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only
    import ray

    from modules.jobs import JobQueue, JobStatus, JobStore, ray_workers

    own_cluster = not ray.is_initialized()
    ray_workers.connect(num_cpus=max(counts))
    results_root = Path(tempfile.mkdtemp(prefix="easel-bench-workers-"))
    rounds: list[dict[str, object]] = []
    overheads: list[float] = []
    try:
        for count in counts:
            queue = JobQueue(JobStore(":memory:"))
            workers = ray_workers.start_workers(count, FACTORY, (step_seconds,), prefix=f"bench{count}",
                                                accept=ray_workers.store_files(results_root))
            queue.set_workers(workers)
            for worker in workers:
                while not worker.wait_ready(5.0):
                    pass
            queue.start()
            queue.wait(queue.submit("sim", {"steps": 1}).id, timeout=60)  # warm the path once per round
            started = time.perf_counter()
            submitted = [queue.submit("sim", {"steps": steps}) for _ in range(jobs)]
            finals = [queue.wait(job.id, timeout=600) for job in submitted]
            elapsed = time.perf_counter() - started
            assert all(job.status is JobStatus.SUCCEEDED for job in finals)
            for job in finals:
                assert job.started_at is not None and job.finished_at is not None
                overheads.append(job.finished_at - job.started_at - steps * step_seconds)
            rounds.append({"workers": count, "jobs": jobs, "seconds": round(elapsed, 3),
                           "jobs_per_s": round(jobs / elapsed, 2)})
            queue.stop(timeout=10)
            queue.close_workers()
        base = float(str(rounds[0]["jobs_per_s"]))
        for row in rounds:
            row["speedup"] = round(float(str(row["jobs_per_s"])) / base, 2)
        rerun = _death_to_rerun(kills, results_root)
    finally:
        if own_cluster:
            ray.shutdown()
    return {
        "job": {"steps": steps, "step_seconds": step_seconds, "work_seconds": steps * step_seconds},
        "throughput": rounds,
        "dispatch_overhead_ms": {"median": round(statistics.median(overheads) * 1000, 1),
                                 "p95": round(_percentile(overheads, 0.95) * 1000, 1), "jobs": len(overheads)},
        "death_to_rerun_s": rerun,
    }


def _death_to_rerun(kills: int, results_root: Path) -> dict[str, object]:
    from modules.jobs import JobQueue, JobStatus, JobStore, ray_workers

    queue = JobQueue(JobStore(":memory:"))
    workers = ray_workers.start_workers(2, FACTORY, (0.01,), prefix="bench-kill",
                                        accept=ray_workers.store_files(results_root))
    queue.set_workers(workers)
    queue.start()
    times: list[float] = []
    for number in range(kills):
        gate = results_root / f"gate{number}"
        job = queue.submit("sim", {"steps": 1, "pause_file": str(gate)})
        running = Path(f"{gate}.running")
        deadline = time.monotonic() + 120
        while not running.exists():
            assert time.monotonic() < deadline, "the held job never started"
            time.sleep(0.01)
        pid = int(running.read_text())
        running.unlink()
        killed_at = time.time()
        os.kill(pid, signal.SIGKILL)
        while not running.exists():  # the next attempt has started on a worker and reached its first step
            assert time.monotonic() < deadline + 60, "the job never ran again"
            time.sleep(0.005)
        current = queue.get(job.id)
        assert current is not None and current.attempt == 2 and current.started_at is not None
        times.append(current.started_at - killed_at)
        gate.touch()
        assert queue.wait(job.id, timeout=60).status is JobStatus.SUCCEEDED
        while any(info.state.value == "dead" for info in queue.workers()):  # let the killed worker come back
            time.sleep(0.05)
    queue.stop(timeout=10)
    queue.close_workers()
    return {"kills": kills, "seconds": [round(value, 2) for value in times], "max": round(max(times), 2)}
