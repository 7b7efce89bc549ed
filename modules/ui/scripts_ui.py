"""The Script dropdown and the always-visible scripts' sections of a generation tab.

A1111's Script API is positional by nature (``ui()`` returns a list of components whose values become
``run(p, *args)``), so this is the one place where the UI maps components by position: each script's own
component list is turned into *that script's* ``script_args`` / ``alwayson_scripts[title]["args"]``, never
into one global argument array.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from modules.extensions.ui_pass import events_undone_on_error
from modules.ui.context import UiContext

log = logging.getLogger(__name__)

NO_SCRIPT = "None"
HIDDEN = "easel-script-hidden"  # display: none (mount.CSS): in the page, where scripts' JavaScript finds it, unseen


def _is_component(value: Any) -> bool:
    return isinstance(value, gr.components.Component)


def _show_kind(script: Any, is_img2img: bool) -> str:
    """"selectable", "alwayson" or "hidden" from ``show()`` (A1111's AlwaysVisible is a non-bool sentinel)."""
    if getattr(script, "alwayson", False):
        return "alwayson"
    try:
        shown = script.show(is_img2img) if hasattr(script, "show") else True
    except Exception:
        log.exception("script %r: show() failed", script)
        return "hidden"
    if shown is True:
        return "selectable"
    if shown is False or shown is None:
        return "hidden"
    return "alwayson"


def _title(script: Any) -> str:
    try:
        return str(script.title())
    except Exception:
        return type(script).__name__


@dataclass
class ScriptSection:
    dropdown: gr.Dropdown | None = None
    selectable: dict[str, list[Any]] = field(default_factory=dict)
    alwayson: dict[str, list[Any]] = field(default_factory=dict)
    groups: dict[str, Any] = field(default_factory=dict)
    infotext_fields: list[tuple[Any, Any]] = field(default_factory=list)
    """The scripts' ``infotext_fields``: ``(component, infotext key or function of the parsed infotext)``."""

    @property
    def components(self) -> list[Any]:
        comps = [c for comps in (*self.selectable.values(), *self.alwayson.values()) for c in comps]
        return ([self.dropdown] if self.dropdown is not None else []) + comps

    def collect(self, values: Mapping[Any, Any]) -> dict[str, Any]:
        """Request fields for the scripts: ``script_name``/``script_args`` and ``alwayson_scripts`` by title."""
        result: dict[str, Any] = {}
        name = values.get(self.dropdown) if self.dropdown is not None else None
        if name and name != NO_SCRIPT and name in self.selectable:
            result["script_name"] = name
            result["script_args"] = [values.get(comp) for comp in self.selectable[name]]
        alwayson = {title: {"args": [values.get(comp) for comp in comps]} for title, comps in self.alwayson.items()}
        if alwayson:
            result["alwayson_scripts"] = alwayson
        return result


def build_script_section(ctx: UiContext, is_img2img: bool, tab: str) -> ScriptSection:
    """Render the scripts of one tab inside the current Blocks context."""
    section = ScriptSection()
    scripts = ctx.scripts(is_img2img)
    if not scripts:
        return section
    selectable = [s for s in scripts if _show_kind(s, is_img2img) == "selectable"]
    alwayson = [s for s in scripts if _show_kind(s, is_img2img) == "alwayson"]

    # A1111 puts each always-on script's controls in a plain group: scripts draw their own accordion, and a
    # closed accordion would keep their elements out of the page, where their JavaScript looks for them
    for script in alwayson:
        title = _title(script)
        with gr.Group(elem_id=f"{tab}_script_{_slug(title)}") as group:
            section.alwayson[title] = _script_controls(script, is_img2img)
        if _renders_nothing(group):  # a script without visible controls would leave an empty grey strip
            group.elem_classes = [*(group.elem_classes or []), HIDDEN]
        script.group = group

    if selectable:
        titles = [_title(s) for s in selectable]
        section.dropdown = gr.Dropdown([NO_SCRIPT, *titles], value=NO_SCRIPT, label="Script",
                                       elem_id=f"{tab}_script_dropdown")
        for script, title in zip(selectable, titles, strict=True):
            # a class, not visible=False: in the page while not shown, as A1111's script groups are (Gradio leaves
            # invisible blocks out of the page, and shows a column made with visible="hidden" until it is updated)
            with gr.Column(elem_id=f"{tab}_script_{_slug(title)}", elem_classes=[HIDDEN]) as group:
                section.selectable[title] = _script_controls(script, is_img2img)
            section.groups[title] = group

        groups = section.groups

        def show_selected(name: str) -> dict[Any, Any]:
            return {group: gr.update(elem_classes=[] if title == name else [HIDDEN]) for title, group in groups.items()}

        section.dropdown.change(show_selected, section.dropdown, list(groups.values()), queue=False,
                                show_progress="hidden")
    for script in scripts:  # set by ui(): A1111 pastes an infotext into these controls too
        for entry in getattr(script, "infotext_fields", None) or []:
            if isinstance(entry, (tuple, list)) and len(entry) >= 2 and getattr(entry[0], "_id", None) is not None:
                section.infotext_fields.append((entry[0], entry[1]))
    return section


def _renders_nothing(block: Any) -> bool:
    """True when nothing in ``block`` draws on the page (no children, or only ``gr.State`` and invisible ones)."""
    return all(isinstance(child, gr.State) or getattr(child, "visible", True) is False
               for child in getattr(block, "children", []))


def _script_controls(script: Any, is_img2img: bool) -> list[Any]:
    try:
        with events_undone_on_error():  # its half-registered listeners would break the whole page
            made = script.ui(is_img2img) if hasattr(script, "ui") else []
    except Exception:
        log.exception("script %r: ui() failed; it runs with no controls", _title(script))
        gr.Markdown(f"*{_title(script)}: its controls could not be built (see the server log)*")
        return []
    if made is None:
        return []
    if isinstance(made, dict):  # some scripts return {name: component}
        made = list(made.values())
    return [comp for comp in made if _is_component(comp)]


def _slug(title: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in title.lower()).strip("_")
