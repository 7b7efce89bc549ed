"""A1111's ``modules.call_queue`` wrappers for extension UI callbacks. Generation itself goes through Easel's
job queue; ``queue_lock`` serialises the extension functions wrapped here (A1111's behaviour), and an exception
becomes an error message in the UI instead of breaking the page."""

from __future__ import annotations

import functools
import html
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
queue_lock = threading.Lock()


def wrap_queued_call(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        with queue_lock:
            return func(*args, **kwargs)

    return call


def wrap_gradio_call(func: Callable[..., Any], extra_outputs: Any = None,
                     add_stats: bool = False) -> Callable[..., Any]:
    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            log.exception("extension UI call %s failed", getattr(func, "__name__", func))
            message = f"<div class='error'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</div>"
            return [*(extra_outputs or [None, ""]), message]

    return call


def wrap_gradio_call_no_job(func: Callable[..., Any], extra_outputs: Any = None,
                            add_stats: bool = False) -> Callable[..., Any]:
    return wrap_gradio_call(func, extra_outputs, add_stats)


def wrap_gradio_gpu_call(func: Callable[..., Any], extra_outputs: Any = None) -> Callable[..., Any]:
    return wrap_gradio_call(wrap_queued_call(func), extra_outputs)
