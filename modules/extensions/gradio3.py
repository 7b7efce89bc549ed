"""Gradio 3.x calls of A1111 extension UIs, translated onto the installed Gradio 6.

A1111 v1.10 runs Gradio 3.41, and extension UIs are written for it: ``gr.Box``, ``gr.inputs.*``,
``gr.Dropdown.update(...)``, ``.style(...)``, ``_js=`` on events, keyword arguments that Gradio 4-6 renamed or
removed (``source=``, ``tool=``, ``show_progress=True``...). Without help a single such call raises and the
extension loses its whole UI.

:func:`install` adds the missing names (``gr.Box``, ``gr.inputs``, ``gr.outputs``, ``Component.update``,
``Block.style``, ``gr.components.IOComponent``) and wraps component constructors and event listeners. The
wrappers translate only calls made from extension code, i.e. from a file outside Easel's own ``modules/`` and
outside gradio: Easel's UI keeps Gradio 6's strict argument checks, so a mistake there still fails loudly.
A keyword argument Gradio 6 does not know is dropped with one warning per component and argument, naming it.
``visible=False`` becomes ``visible="hidden"``: Gradio 3 put hidden components in the page (only not shown), and
extension scripts find them there by id; Gradio 6 leaves ``visible=False`` ones out of the page.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modules.core.paths import REPO_ROOT

log = logging.getLogger(__name__)

_MODULES_DIR = str(REPO_ROOT / "modules") + "/"
_INSTALLED = False
_WARNED: set[tuple[str, str]] = set()

IMAGE_SOURCES = {"upload": ["upload"], "webcam": ["webcam"], "clipboard": ["clipboard"], "canvas": ["upload"],
                 "microphone": ["microphone"]}
BUTTON_VARIANTS = ("primary", "secondary", "stop", "huggingface")


def _gradio_dir() -> str:
    import gradio

    return str(Path(gradio.__file__).parent) + "/"


def is_extension_code(filename: str) -> bool:
    """Extension code: any file but gradio's and Easel's own packages (``modules/<package>/``, ``webui.py``).

    The A1111 façade modules at the top of ``modules/`` (``modules/ui_components.py``...) count as extension
    code: they are the classes extensions subclass and call with Gradio 3 arguments.
    """
    if filename.startswith((_gradio_dir(), "<")) or filename == str(REPO_ROOT / "webui.py"):
        return False
    if filename.startswith(_MODULES_DIR):
        return "/" not in filename[len(_MODULES_DIR):]
    return True


def from_extension_code(depth: int = 2) -> bool:
    """Whether the frame ``depth`` levels up (the caller of the wrapped gradio call) is extension code."""
    try:
        filename = sys._getframe(depth).f_code.co_filename
    except ValueError:
        return False
    return is_extension_code(filename)


def _warn(owner: str, name: str, why: str) -> None:
    if (owner, name) in _WARNED:
        return
    _WARNED.add((owner, name))
    log.warning("extension UI: %s(%s=...) is Gradio 3 API; %s", owner, name, why)


def _inside_tabs() -> bool:
    """Whether the block being built sits directly in a ``gr.Tabs`` (whose shown children must be tabs)."""
    from gradio.context import Context
    from gradio.layouts import Tabs

    return isinstance(Context.block, Tabs)


def translate_kwargs(cls: type, kwargs: dict[str, Any], accepted: set[str] | None = None) -> dict[str, Any]:
    """Gradio 3 keyword arguments of ``cls`` as Gradio 6 accepts them (renamed, converted or dropped)."""
    owner = cls.__name__
    if accepted is None:
        accepted = set(inspect.signature(cls.__init__).parameters)  # type: ignore[misc]
    out = dict(kwargs)
    if "default" in out and "value" not in out and "default" not in accepted:
        out["value"] = out.pop("default")
    if "source" in out and "source" not in accepted:
        source = out.pop("source")
        if "sources" in accepted and source is not None:
            out["sources"] = IMAGE_SOURCES.get(str(source), [str(source)])
    if owner == "File" and out.get("type") in ("file", "bytes"):
        out["type"] = "filepath" if out["type"] == "file" else "binary"
    if owner == "Button" and out.get("variant") not in (None, *BUTTON_VARIANTS):
        out["variant"] = "primary" if out.get("variant") == "primary" else "secondary"
    if owner == "Gallery" and "grid" in out and "columns" in accepted:
        grid = out.pop("grid")
        out.setdefault("columns", grid[0] if isinstance(grid, (list, tuple)) and grid else grid)
    if "max_rows" in out and "row_count" in accepted:
        out.pop("max_rows")
    if out.get("visible") is False and "visible" in accepted and not _inside_tabs():
        out["visible"] = "hidden"  # Gradio 3 kept hidden components in the page; extension scripts look them up
    if isinstance(out.get("scale"), float) and "scale" in accepted:
        out["scale"] = max(0, round(out["scale"]))
    for name in list(out):
        if name not in accepted:
            _warn(owner, name, "Gradio 6 has no such argument, so it is left out")
            out.pop(name)
    return out


_HIDDEN_LAYOUTS: list[Any] = []  # layout blocks extension code made with visible=False (see hide_layouts_on_load)


def _is_layout(block: Any) -> bool:
    from gradio.blocks import BlockContext

    return isinstance(block, BlockContext)


def hide_layouts_on_load(blocks: Any) -> int:
    """Hide, once the page has loaded, the layout blocks extension code made hidden; returns how many.

    Gradio 6 draws a Row, Column or Group made with ``visible="hidden"`` as if it were visible until an update
    reaches it (a component made so is hidden at once). One load event sends those blocks that update, so an
    extension's hidden row stays hidden, and its own ``gr.update(visible=True)`` still shows it later. Call it
    inside the page's ``gr.Blocks()``; blocks made for other pages (the scripts runner's own) are left out.
    """
    import gradio as gr

    on_page = set(map(id, blocks.blocks.values()))
    layouts = [block for block in _HIDDEN_LAYOUTS if id(block) in on_page]
    _HIDDEN_LAYOUTS.clear()
    if layouts:
        blocks.load(lambda: [gr.update(visible="hidden") for _ in layouts] if len(layouts) > 1
                    else gr.update(visible="hidden"), None, layouts, queue=False, show_progress="hidden")
    return len(layouts)


def _wrap_init(cls: type) -> None:
    original = cls.__dict__["__init__"]
    if getattr(original, "_easel_gradio3", False):
        return
    accepted = set(inspect.signature(original).parameters)

    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        hidden_layout = False
        if kwargs and from_extension_code():
            kwargs = translate_kwargs(cls, kwargs, accepted)
            hidden_layout = kwargs.get("visible") == "hidden" and _is_layout(self)
        original(self, *args, **kwargs)
        if hidden_layout:
            _HIDDEN_LAYOUTS.append(self)

    __init__._easel_gradio3 = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[misc]


EVENT_RENAMES = {"_js": "js"}
EVENT_DROPPED = ("every", "status_tracker", "_preprocess", "_postprocess", "_api_mode")


def translate_event_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    for old, new in EVENT_RENAMES.items():
        if old in out:
            out.setdefault(new, out.pop(old))
    if isinstance(out.get("show_progress"), bool):
        out["show_progress"] = "full" if out["show_progress"] else "hidden"
    for name in EVENT_DROPPED:
        if name in out:
            _warn("event", name, "Gradio 6 has no such argument, so it is left out")
            out.pop(name)
    return out


def _wrap_listener(listener: Callable[..., Any]) -> Callable[..., Any]:
    if getattr(listener, "_easel_gradio3", False):
        return listener

    @functools.wraps(listener)
    def event(*args: Any, **kwargs: Any) -> Any:
        if kwargs and from_extension_code():
            kwargs = translate_event_kwargs(kwargs)
        return _wrap_dependency(listener(*args, **kwargs))

    event._easel_gradio3 = True  # type: ignore[attr-defined]
    return event


def _wrap_dependency(dependency: Any) -> Any:
    """``.then`` / ``.success`` / ``.failure`` of a returned dependency translate their arguments too."""
    for name in ("then", "success", "failure"):
        chained = getattr(dependency, name, None)
        if callable(chained) and not getattr(chained, "_easel_gradio3", False):
            try:
                setattr(dependency, name, _wrap_listener(chained))
            except (AttributeError, TypeError):
                pass
    return dependency


def _update(cls: type, **kwargs: Any) -> dict[str, Any]:
    """Gradio 3's ``Component.update(...)``: the update dict Gradio 6 builds with ``gr.update``."""
    import gradio as gr

    return gr.update(**translate_kwargs(cls, kwargs))


STYLE_ATTRIBUTES = {"container": "container", "height": "height", "width": "width", "columns": "columns",
                    "rows": "rows", "equal_height": "equal_height", "object_fit": "object_fit",
                    "preview": "preview", "size": "size", "min_width": "min_width", "scale": "scale"}


def _style(self: Any, **kwargs: Any) -> Any:
    """Gradio 3's ``.style(...)``: the arguments that still exist become attributes; the rest are dropped."""
    if "grid" in kwargs:
        grid = kwargs.pop("grid")
        kwargs.setdefault("columns", grid[0] if isinstance(grid, (list, tuple)) and grid else grid)
    if kwargs.pop("full_width", False):
        kwargs.setdefault("scale", 1)
    for name, value in kwargs.items():
        attribute = STYLE_ATTRIBUTES.get(name)
        if attribute is not None and hasattr(self, attribute):
            setattr(self, attribute, value)
        else:
            _warn(f"{type(self).__name__}.style", name, "it has no Gradio 6 equivalent, so it is left out")
    return self


def _legacy_namespace(kind: str) -> types.ModuleType:
    """``gr.inputs`` / ``gr.outputs`` (Gradio 2-3): constructors onto today's components, ``default`` -> ``value``."""
    import gradio as gr

    namespace = types.ModuleType(f"gradio.{kind}")
    names = ("Textbox", "Number", "Slider", "Checkbox", "CheckboxGroup", "Radio", "Dropdown", "Image", "Video",
             "Audio", "File", "Dataframe", "Timeseries", "State", "HTML", "JSON", "Label", "Gallery",
             "Chatbot", "Model3D", "Plot", "Markdown", "Code", "ColorPicker", "HighlightedText")
    for name in names:
        component = getattr(gr, name, None)
        if component is None:
            continue

        def factory(*args: Any, _component: type = component, **kwargs: Any) -> Any:
            return _component(*args, **translate_kwargs(_component, kwargs))

        factory.__name__ = name
        setattr(namespace, name, factory)
    namespace.Image3D = getattr(namespace, "Model3D", None)  # type: ignore[attr-defined]
    namespace.Carousel = getattr(namespace, "Gallery", None)  # type: ignore[attr-defined]
    return namespace


def _no_stub_files_outside_gradio() -> None:
    """Gradio 6 writes a ``.pyi`` stub beside the source of every component subclass it sees defined; for a
    subclass in an extension (A1111's ``ToolButton(gr.Button)`` pattern) or in this module that would be a
    stray file in the user's folders, so stubs are written for gradio's own classes only."""
    import gradio.component_meta as component_meta

    original = component_meta.create_or_modify_pyi
    if getattr(original, "_easel_gradio3", False):
        return

    def create_or_modify_pyi(component_class: type, class_name: str, events: list[Any]) -> None:
        if component_class.__module__.startswith("gradio."):
            original(component_class, class_name, events)

    create_or_modify_pyi._easel_gradio3 = True  # type: ignore[attr-defined]
    component_meta.create_or_modify_pyi = create_or_modify_pyi


@functools.cache
def config_class(cls: type) -> type:
    """The class whose ``__init__`` parameters describe ``cls``'s props in the page config.

    Gradio 6 reads a component's props from its class's ``__init__`` signature. A subclass written
    ``def __init__(self, *args, **kwargs)`` (A1111's ``ToolButton(gr.Button)`` pattern, common in extensions)
    has no named parameters, so its props would be empty and the browser could not draw it; the nearest base
    with named parameters describes it instead.
    """
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = list(inspect.signature(init).parameters.values())[1:]
        if any(parameter.kind in named for parameter in parameters):
            return klass
    return cls


def _patch_config_of_star_args_subclasses() -> None:
    """See :func:`config_class`; also, positional arguments of such a subclass reach its base unchanged (Gradio
    6 wraps every component ``__init__`` to record its arguments, and that wrapper drops ``*args``)."""
    import gradio.component_meta as component_meta
    from gradio.blocks import Block

    original_updateable = component_meta.updateable
    if not getattr(original_updateable, "_easel_gradio3", False):
        def updateable(fn: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.getfullargspec(fn).varargs is not None:
                return fn  # the base class's own wrapper records the arguments
            return original_updateable(fn)

        updateable._easel_gradio3 = True  # type: ignore[attr-defined]
        component_meta.updateable = updateable

    original = Block.get_config
    if getattr(original, "_easel_gradio3", False):
        return

    @functools.wraps(original)
    def get_config(self: Any, cls: type | None = None) -> dict[str, Any]:
        return original(self, cls if cls is not None else config_class(type(self)))  # type: ignore[arg-type]

    get_config._easel_gradio3 = True  # type: ignore[attr-defined]
    Block.get_config = get_config  # type: ignore[method-assign]


def install() -> None:
    """Add the Gradio 3 names and wrap the constructors and listeners (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    import gradio as gr
    from gradio.blocks import Block, BlockContext
    from gradio.components.base import Component

    _INSTALLED = True
    _no_stub_files_outside_gradio()
    _patch_config_of_star_args_subclasses()
    if not hasattr(gr, "Box"):
        class Box(gr.Group):
            """Gradio 3's ``gr.Box`` (a bordered group): a ``gr.Group`` in Gradio 6."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs = {k: v for k, v in kwargs.items() if k in ("visible", "elem_id", "elem_classes", "render",
                                                                 "key", "preserved_by_key")}
                super().__init__(*args, **kwargs)

            def get_block_name(self) -> str:
                return "group"  # the browser has no "box" component: it renders as the group it is

        gr.Box = Box  # type: ignore[attr-defined]
        gr.layouts.Box = Box  # type: ignore[attr-defined]
    for alias in ("IOComponent", "FormComponent"):
        if not hasattr(gr.components, alias):
            setattr(gr.components, alias, Component)
    if not hasattr(gr, "Variable"):
        gr.Variable = gr.State  # type: ignore[attr-defined]
    for kind in ("inputs", "outputs"):
        if not hasattr(gr, kind):
            namespace = _legacy_namespace(kind)
            setattr(gr, kind, namespace)
            sys.modules[f"gradio.{kind}"] = namespace
    if not hasattr(Block, "style"):
        Block.style = _style  # type: ignore[attr-defined]
    if not hasattr(Block, "update"):
        Block.update = classmethod(_update)  # type: ignore[attr-defined]

    classes: list[type] = []
    stack: list[type] = [Component, BlockContext]
    while stack:
        current = stack.pop()
        classes.append(current)
        stack.extend(current.__subclasses__())
    for cls in classes:
        if "__init__" in cls.__dict__ and cls.__module__.startswith("gradio"):
            _wrap_init(cls)
        for event in getattr(cls, "EVENTS", []) or []:
            name = event if isinstance(event, str) else getattr(event, "event_name", None)
            listener = cls.__dict__.get(name) if isinstance(name, str) else None
            if isinstance(name, str) and callable(listener):
                setattr(cls, name, _wrap_listener(listener))
    blocks_load = gr.Blocks.__dict__.get("load")
    if callable(blocks_load):
        gr.Blocks.load = _wrap_listener(blocks_load)  # type: ignore[method-assign]
