"""A worker runtime that sleeps per step instead of diffusing: it measures the dispatcher, not the model.

Used by ``cli/bench.py --workers`` and by the cluster tests. A job's payload says ``steps`` (default 4),
``step_seconds`` (default the runtime's), ``model`` (the checkpoint it would need: the worker "loads" it, which
takes ``load_seconds``), ``previews`` (report a small preview image with every step), and optionally
``pause_file``: the runtime waits before its first step until that file exists, so a test can act on a job it
knows is running. The result names the worker's pid and the attempt, and one result file (``000.txt``) goes back
to the API process like a generated image would.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from modules.jobs.context import JobContext
from modules.jobs.models import Job
from modules.jobs.ray_workers import RemoteReply


class SleepRuntime:
    def __init__(self, step_seconds: float = 0.01, load_seconds: float = 0.0) -> None:
        self.step_seconds = step_seconds
        self.load_seconds = load_seconds
        self.models: tuple[str, ...] = ()

    def run(self, job: Job, ctx: JobContext, context: object) -> RemoteReply:
        payload = job.payload
        steps = int(str(payload.get("steps", 4)))
        step_seconds = float(str(payload.get("step_seconds", self.step_seconds)))
        model = payload.get("model")
        if isinstance(model, str) and model not in self.models:
            time.sleep(self.load_seconds)
            self.models = (model,)
        pause_file = payload.get("pause_file")
        if isinstance(pause_file, str):
            Path(pause_file + ".running").write_text(str(os.getpid()))
            while not Path(pause_file).exists():
                ctx.check()
                if ctx.should_stop():
                    break
                time.sleep(0.02)
        done = 0
        for step in range(1, steps + 1):
            ctx.check()
            if ctx.should_stop():
                break
            time.sleep(step_seconds)
            done = step
            preview = Image.new("RGB", (8, 8), (step * 10 % 256, 0, 0)) if payload.get("previews") else None
            ctx.report(step, steps, textinfo=f"step {step}", preview=preview)
        text = f"{job.id} attempt {job.attempt} pid {os.getpid()}"
        return RemoteReply(result={"images": ["000.txt"], "pid": os.getpid(), "attempt": job.attempt,
                                   "steps_done": done, "model": model if isinstance(model, str) else None},
                           files={"000.txt": text.encode()})

    def device(self) -> str:
        return "simulated"

    def loaded_models(self) -> tuple[str, ...]:
        return self.models

    def free_memory(self) -> int | None:
        return None


def sleep_runtime(step_seconds: float = 0.01, load_seconds: float = 0.0) -> SleepRuntime:
    return SleepRuntime(step_seconds, load_seconds)
