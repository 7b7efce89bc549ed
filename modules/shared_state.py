"""A1111's ``modules.shared_state``: ``State`` is the class of ``shared.state`` (a view of the job queue)."""

from __future__ import annotations

from modules.shared import _State as State

__all__ = ["State"]
