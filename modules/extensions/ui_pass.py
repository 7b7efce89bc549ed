"""Running extension ``ui()`` code safely: one script's failure stays that script's.

Two places call a script's ``ui()``: the scripts runner, once per tab at start-up, to lay out the API's argument
array and read its defaults (A1111 builds its whole UI for that); and the browser UI, when it renders the tab.

- :func:`events_undone_on_error`: a ``ui()`` that raises half-way may already have registered event listeners
  (often one whose inputs hold ``None``, because the component it wanted was never found); Gradio would fail on
  them when it serialises the page, losing every tab. The listeners the failed call added are removed.
- :func:`detached_blocks`: the runner's pass runs in a Blocks of its own, also when it is first needed while
  the page is being built; a nested Blocks would otherwise add its components to the page.
- :func:`standard_fields`: when the runner's pass comes before any page was built (``--nowebui``, or a request
  during start-up), stand-ins for the tab's standard fields (A1111's element ids and component kinds: prompt,
  steps, width, height...) are created first and shown to the scripts' ``after_component`` hooks, as A1111's
  full UI build does, so a script that keeps a reference to, say, the width slider finds one. With the browser
  UI, the pass runs after the page is built, and the scripts keep the real components they were shown there.
- :data:`UI_BUILD_LOCK`: Gradio's build context is process-wide, so the page build and a runner's pass never
  overlap.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from modules.extensions.script_api import OnComponent

log = logging.getLogger(__name__)

UI_BUILD_LOCK = threading.RLock()


class PageState:
    """Whether the browser page has been built (its components were shown to the scripts)."""

    built = False


# (elem_id suffix, gradio class name, constructor keyword arguments): the fields of A1111's generation tabs
# that extensions look up most, with the component kinds A1111 (and Easel's UI) use for them
STANDARD_FIELDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("prompt", "Textbox", {"label": "Prompt", "lines": 3}),
    ("neg_prompt", "Textbox", {"label": "Negative prompt", "lines": 3}),
    ("sampling", "Dropdown", {"label": "Sampling method", "choices": []}),
    ("steps", "Slider", {"label": "Sampling steps", "minimum": 1, "maximum": 150, "value": 20, "step": 1}),
    ("width", "Slider", {"label": "Width", "minimum": 64, "maximum": 2048, "value": 512, "step": 8}),
    ("height", "Slider", {"label": "Height", "minimum": 64, "maximum": 2048, "value": 512, "step": 8}),
    ("batch_count", "Slider", {"label": "Batch count", "minimum": 1, "maximum": 100, "value": 1, "step": 1}),
    ("batch_size", "Slider", {"label": "Batch size", "minimum": 1, "maximum": 8, "value": 1, "step": 1}),
    ("cfg_scale", "Slider", {"label": "CFG Scale", "minimum": 1.0, "maximum": 30.0, "value": 7.0, "step": 0.5}),
    ("seed", "Number", {"label": "Seed", "value": -1}),
)
IMG2IMG_FIELDS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("denoising_strength", "Slider", {"label": "Denoising strength", "minimum": 0.0, "maximum": 1.0,
                                      "value": 0.75, "step": 0.01}),
)


@contextlib.contextmanager
def events_undone_on_error() -> Iterator[None]:
    """Remove the event listeners registered inside the block if it raises (then re-raise)."""
    from gradio.context import get_blocks_context

    config = get_blocks_context()
    fns = getattr(config, "fns", None)
    before = set(fns) if isinstance(fns, dict) else None
    try:
        yield
    except Exception:
        if isinstance(fns, dict) and before is not None:
            for key in [key for key in fns if key not in before]:
                del fns[key]
        raise


@contextlib.contextmanager
def detached_blocks(gradio: Any) -> Iterator[Any]:
    """A ``gr.Blocks()`` that is its own page, even while another Blocks is being built."""
    from gradio.context import Context, get_render_context, set_render_context

    render, root = get_render_context(), Context.root_block
    set_render_context(None)
    Context.root_block = None
    try:
        with gradio.Blocks() as blocks:
            yield blocks
    finally:
        set_render_context(render)
        Context.root_block = root


def notify_after_component(scripts: Sequence[Any], component: Any, arguments: dict[str, Any],
                           report: Any) -> None:
    """A script's ``after_component`` and its ``on_after_component(elem_id=)`` hooks, each failure reported."""
    elem_id = arguments.get("elem_id")
    for script in scripts:
        try:
            script.after_component(component, **arguments)
            for wanted, callback in getattr(script, "on_after_component_elem_id", []):
                if elem_id and wanted == elem_id:
                    callback(OnComponent(component=component))
        except Exception as exc:
            report(script, exc)


def standard_fields(gradio: Any, tab: str, scripts: Sequence[Any], report: Any) -> list[Any]:
    """Create the tab's stand-in standard fields in the current Blocks and show each to the scripts."""
    made = []
    fields = STANDARD_FIELDS + (IMG2IMG_FIELDS if tab == "img2img" else ())
    for suffix, kind, kwargs in fields:
        arguments = {**kwargs, "elem_id": f"{tab}_{suffix}", "visible": False}
        try:
            component = getattr(gradio, kind)(**arguments)
        except Exception:  # a gradio without this kind or argument: the scripts go without this stand-in
            log.debug("stand-in %s for %s_%s could not be made", kind, tab, suffix, exc_info=True)
            continue
        made.append(component)
        notify_after_component(scripts, component, arguments, report)
    return made
