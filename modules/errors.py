"""A1111's ``modules.errors``: how extensions report an exception (logged with its traceback, kept in a short
list of recent errors), without stopping the job or the server."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from typing import Any

log = logging.getLogger("easel.extensions")
exception_records: list[dict[str, Any]] = []
_already_displayed: set[str] = set()


def format_exception(e: BaseException, tb: Any) -> dict[str, Any]:
    return {"exception": str(e), "traceback": [[f.filename, f.lineno, f.name, f.line or ""]
                                               for f in traceback.extract_tb(tb)]}


def get_exceptions() -> list[dict[str, Any]]:
    return list(reversed(exception_records))


def record_exception() -> None:
    _, e, tb = sys.exc_info()
    if e is None:
        return
    exception_records.append(format_exception(e, tb))
    del exception_records[:-5]


def report(message: str, *, exc_info: bool = False) -> None:
    record_exception()
    log.error(message, exc_info=exc_info)


def print_error_explanation(message: str) -> None:
    log.error(message)


def display(e: BaseException, task: str, *, full_traceback: bool = False) -> None:
    record_exception()
    log.error("%s: %s: %s", task, type(e).__name__, e, exc_info=e)


def display_once(e: BaseException, task: str) -> None:
    record_exception()
    if task in _already_displayed:
        return
    display(e, task)
    _already_displayed.add(task)


def run(code: Callable[[], Any], task: str) -> None:
    try:
        code()
    except Exception as e:
        display(e, task)


def check_versions() -> None:
    """A1111 warns about torch/xformers versions here; Easel's launcher pins its own."""
