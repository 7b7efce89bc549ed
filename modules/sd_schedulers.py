"""A1111's ``modules.sd_schedulers``: the schedule types of Easel's sampler registry (``Automatic``, ``Karras``...)."""

from __future__ import annotations

from typing import Any

from modules.extensions.a1111_models import Scheduler, scheduler_data

__all__ = ["Scheduler"]


def __getattr__(name: str) -> Any:
    if name == "schedulers":
        return scheduler_data()
    if name == "schedulers_map":
        found: dict[str, Any] = {}
        for schedule in scheduler_data():
            found[schedule.name] = schedule
            found[schedule.label] = schedule
        return found
    raise AttributeError(f"module 'modules.sd_schedulers' has no attribute {name!r}")
