"""A1111's ``modules.progress`` task bookkeeping for drop-in extensions. Easel's progress is per job (the job
queue, ``/internal/progress``); these names keep extensions that record their own tasks working."""

from __future__ import annotations

import random
import string
import time
from collections import OrderedDict
from typing import Any

current_task: str | None = None
pending_tasks: OrderedDict[str, float] = OrderedDict()
finished_tasks: list[str] = []
recorded_results: list[tuple[str, Any]] = []
recorded_results_limit = 2


def create_task_id(task_type: str) -> str:
    suffix = "".join(random.choices(string.ascii_letters + string.digits, k=7))
    return f"task({task_type}-{suffix})"


def start_task(id_task: str) -> None:
    global current_task
    current_task = id_task
    pending_tasks.pop(id_task, None)


def finish_task(id_task: str) -> None:
    global current_task
    if current_task == id_task:
        current_task = None
    finished_tasks.append(id_task)
    del finished_tasks[:-16]


def record_results(id_task: str, res: Any) -> None:
    recorded_results.append((id_task, res))
    del recorded_results[:-recorded_results_limit]


def add_task_to_queue(id_job: str) -> None:
    pending_tasks[id_job] = time.time()
