"""The UI side of A1111 extensions: component callbacks, ``on_ui_tabs`` tabs, extension settings, ``opts``.

Points and arguments follow A1111 v1.10:

- ``before_component`` / ``after_component`` fire around the construction of every gradio component and layout
  block (Easel's own and the extensions'), with the keyword arguments it was built with (``elem_id``,
  ``label``...). While a generation tab is built, the scripts of that tab get the same calls
  (``Script.before_component`` / ``after_component`` and ``on_before_component(..., elem_id=)`` hooks). Each
  component also gets A1111's ``gradio-<kind>`` class, which extension CSS and JavaScript select on.
- ``before_ui`` fires once, before the UI is built (``ui_settings`` already ran at start-up, so extension
  options exist without the UI too, and the Settings page shows them); ``ui_tabs`` returns
  ``(blocks, title, elem_id)`` tuples, each rendered as a tab ``#tab_<elem_id>`` after Easel's own tabs and
  before Settings.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from modules.extensions import compat
from modules.extensions.script_api import OnComponent

log = logging.getLogger(__name__)

_CURRENT_SCRIPTS: list[Any] = []
_HOOKS_INSTALLED = False


@contextlib.contextmanager
def scripts_current(scripts: Sequence[Any]) -> Iterator[None]:
    """The scripts of the tab being built: they see the components created inside (A1111's scripts_current)."""
    previous = list(_CURRENT_SCRIPTS)
    _CURRENT_SCRIPTS[:] = list(scripts)
    try:
        yield
    finally:
        _CURRENT_SCRIPTS[:] = previous


def _script_owner(script: Any) -> str:
    return str(getattr(script, "filename", None) or type(script).__name__)


def _fire(point: str, component: Any, kwargs: dict[str, Any]) -> None:
    registry = compat.callbacks()
    if point == "after_component":  # A1111: the global callbacks first, then the scripts (reverse on the way in)
        registry.call(point, component, **kwargs)
    elem_id = kwargs.get("elem_id")
    for script in list(_CURRENT_SCRIPTS):
        try:
            getattr(script, point)(component, **kwargs)
            if elem_id:
                for wanted, callback in getattr(script, f"on_{point}_elem_id", []):
                    if wanted == elem_id:
                        callback(OnComponent(component=component))
        except Exception as exc:
            registry.report(point, _script_owner(script), exc)
    if point == "before_component":
        registry.call(point, component, **kwargs)


def _add_kind_class(block: Any) -> None:
    try:
        kind = block.get_block_name()
    except Exception:
        return
    classes = block.elem_classes
    classes = [classes] if isinstance(classes, str) else list(classes or [])
    extra = [f"gradio-{kind}"]
    if getattr(block, "multiselect", False):
        extra.append("multiselect")
    block.elem_classes = [*extra, *[c for c in classes if c not in extra]]


def install_component_hooks() -> None:
    """Wrap the constructors of gradio's components and layout blocks once (idempotent)."""
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    from gradio.blocks import BlockContext
    from gradio.components.base import Component

    _HOOKS_INSTALLED = True
    for base in (Component, BlockContext):
        original = base.__init__

        def __init__(self: Any, *args: Any, _original: Any = original, _base: type = base, **kwargs: Any) -> None:
            # subclasses reach here through super().__init__: hook the outermost call only
            outermost = not getattr(self, "_easel_constructing", False)
            if outermost:
                self._easel_constructing = True
                arguments = dict(kwargs)
                _fire("before_component", self, arguments)
            try:
                _original(self, *args, **kwargs)
            finally:
                if outermost:
                    self._easel_constructing = False
            if outermost:
                _add_kind_class(self)
                _fire("after_component", self, arguments)

        base.__init__ = __init__  # type: ignore[method-assign]


def constructor_kwargs(component: Any) -> dict[str, Any]:
    """The keyword arguments the outermost constructor was called with (gradio records them)."""
    recorded = getattr(component, "_constructor_args", None) or [{}]
    return dict(recorded[0])


# -- on_ui_tabs ----------------------------------------------------------------------------------------------
@dataclass
class ExtensionTab:
    blocks: Any
    title: str
    elem_id: str


def extension_tabs() -> list[ExtensionTab]:
    """Call the ``ui_tabs`` callbacks (before the page's Blocks exist, as A1111 does) and keep valid tabs."""
    tabs: list[ExtensionTab] = []
    registry = compat.callbacks()
    for entry in registry.entries("ui_tabs"):
        try:
            result = entry.callback() or []
            for item in result:
                blocks, title, elem_id = item[0], item[1], item[2]
                tabs.append(ExtensionTab(blocks, str(title), str(elem_id)))
        except Exception as exc:
            registry.report("ui_tabs", entry.owner, exc)
    return tabs


def render_extension_tab(gr: Any, tab: ExtensionTab) -> None:
    with gr.Tab(tab.title, id=tab.elem_id, elem_id=f"tab_{tab.elem_id}"):
        try:
            tab.blocks.render()
        except Exception as exc:
            compat.callbacks().report("ui_tabs", tab.title, exc)
            gr.Markdown(f"*{tab.title}: this tab could not be shown (see the server log)*")


# -- on_ui_settings ------------------------------------------------------------------------------------------
@dataclass
class ExtensionSettings:
    components: dict[str, Any] = field(default_factory=dict)  # option key -> component


def _section_of(info: Any) -> tuple[str, str]:
    section = getattr(info, "section", None)
    if isinstance(section, (tuple, list)) and len(section) >= 2:
        return str(section[0]), str(section[1])
    if isinstance(section, (tuple, list)) and section:
        return str(section[0]), str(section[0])
    return "extensions", "Extensions"


def _component_for(gr: Any, key: str, info: Any, value: Any) -> Any:
    args = info.component_args() if callable(info.component_args) else dict(info.component_args or {})
    elem_id = f"setting_{key}"
    component = info.component
    if component is None:
        default = info.default
        component = gr.Checkbox if isinstance(default, bool) else gr.Number if isinstance(
            default, (int, float)) else gr.Textbox
    if component is gr.Number and isinstance(info.default, int) and not isinstance(info.default, bool):
        args.setdefault("precision", 0)
    if component is gr.Textbox and value is not None and not isinstance(value, str):
        value = str(value)
    return component(label=info.label or key, value=value, elem_id=elem_id, **args)


def extension_option_infos() -> dict[str, Any]:
    """The options extensions registered (``shared.opts.add_option``), without A1111's own keys that Easel
    registers for API clients only (they change nothing in Easel, so the Settings page does not offer them)."""
    from modules.extensions.options import A1111_SECTION

    try:
        infos = compat.options().infos()
    except RuntimeError:  # not bound: no extensions were loaded
        return {}
    return {key: info for key, info in infos.items() if getattr(info, "section", None) != A1111_SECTION}


def build_extension_settings(gr: Any, opts_get: Any) -> ExtensionSettings:
    """Accordions of the options extensions registered, grouped by their A1111 section (``settings_<id>``)."""
    settings = ExtensionSettings()
    infos = extension_option_infos()
    sections: dict[tuple[str, str], list[tuple[str, Any]]] = {}
    for key, info in infos.items():
        sections.setdefault(_section_of(info), []).append((key, info))
    for (section_id, title), items in sections.items():
        with gr.Accordion(title, open=False, elem_id=f"settings_{section_id}"):
            for key, info in items:
                try:
                    if getattr(info, "comment_before", ""):
                        gr.HTML(info.comment_before, elem_classes=["settings-comment"])
                    if getattr(info, "do_not_save", False):
                        gr.HTML(str(info.default), elem_id=f"setting_{key}")
                        continue
                    settings.components[key] = _component_for(gr, key, info, opts_get(key))
                    if getattr(info, "comment_after", ""):
                        gr.HTML(info.comment_after, elem_classes=["settings-comment"])
                except Exception as exc:
                    compat.callbacks().report("ui_settings", key, exc)
    return settings


def extension_option_default(key: str) -> Any:
    try:
        return compat.options().default(key)
    except RuntimeError:
        return None


def option_values(options: Any) -> dict[str, Any]:
    """Every option the browser's ``opts`` holds: Easel's, plus registered options at their value or default."""
    values: dict[str, Any] = options.model_dump(mode="json")
    try:
        infos = compat.options().infos()
    except RuntimeError:
        infos = {}
    for key, info in infos.items():
        if key not in values and not getattr(info, "do_not_save", False):
            values[key] = info.default
    return values


def options_json(options: Any) -> str:
    return json.dumps(option_values(options), default=str)
