"""The A1111 ``Script`` base class, re-exported by the ``modules.scripts`` façade.

Method names, signatures and defaults are A1111 v1.10.1's, so extension scripts subclass it unchanged. Every
hook is a no-op here; :mod:`modules.extensions.runner` decides which ones run and with which arguments.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from modules.extensions.script_args import ScriptArgs

AlwaysVisible = object()
"""Returned by ``Script.show()`` for scripts whose hooks run on every generation (A1111's sentinel)."""


@dataclass
class PostprocessBatchListArgs:
    """``postprocess_batch_list`` argument: hooks may replace or extend ``images`` in place."""

    images: list[Any]


@dataclass
class OnComponent:
    component: Any


class Script:
    """Base of extension scripts. ``title()`` is required; its lower-case text is the API name."""

    name: str | None = None
    section: str | None = None
    filename: str | None = None
    args_from: int | None = None
    args_to: int | None = None
    alwayson: bool = False
    is_txt2img: bool = False
    is_img2img: bool = False
    tabname: str | None = None
    group: Any = None
    create_group: bool = True
    infotext_fields: list[Any] | None = None
    paste_field_names: list[str] | None = None
    api_info: Any = None
    setup_for_ui_only: bool = False
    controls: list[Any] | None = None
    sorting_priority: int = 0
    api_args: type[ScriptArgs] | None = None
    """Easel: the typed declaration of the positional arguments (see :mod:`modules.extensions.script_args`)."""

    def __init__(self) -> None:
        self.on_before_component_elem_id: list[tuple[str, Any]] = []
        self.on_after_component_elem_id: list[tuple[str, Any]] = []

    def title(self) -> str:
        raise NotImplementedError(f"{self.__class__.__name__} must define title()")

    def ui(self, is_img2img: bool) -> list[Any] | None:
        return None

    def show(self, is_img2img: bool) -> Any:
        return True

    def run(self, p: Any, *args: Any) -> Any:
        return None

    def setup(self, p: Any, *args: Any) -> None:
        pass

    def before_process(self, p: Any, *args: Any) -> None:
        pass

    def process(self, p: Any, *args: Any) -> None:
        pass

    def before_process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def after_extra_networks_activate(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def process_before_every_sampling(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def process_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def postprocess_batch(self, p: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def postprocess_batch_list(self, p: Any, pp: PostprocessBatchListArgs, *args: Any, **kwargs: Any) -> None:
        pass

    def on_mask_blend(self, p: Any, mba: Any, *args: Any) -> None:
        pass

    def post_sample(self, p: Any, ps: Any, *args: Any) -> None:
        pass

    def postprocess_image(self, p: Any, pp: Any, *args: Any) -> None:
        pass

    def postprocess_maskoverlay(self, p: Any, ppmo: Any, *args: Any) -> None:
        pass

    def postprocess_image_after_composite(self, p: Any, pp: Any, *args: Any) -> None:
        pass

    def postprocess(self, p: Any, processed: Any, *args: Any) -> None:
        pass

    def before_hr(self, p: Any, *args: Any) -> None:
        pass

    def before_component(self, component: Any, **kwargs: Any) -> None:
        pass

    def after_component(self, component: Any, **kwargs: Any) -> None:
        pass

    def on_before_component(self, callback: Any, *, elem_id: str) -> None:
        self.on_before_component_elem_id.append((elem_id, callback))

    def on_after_component(self, callback: Any, *, elem_id: str) -> None:
        self.on_after_component_elem_id.append((elem_id, callback))

    def describe(self) -> str:
        return ""

    def check_args(self, args: Any, request: Any, limits: Any, init_sizes: list[tuple[int, int]]) -> None:
        """Easel: checks of validated ``args`` (an ``api_args`` instance) that need the request (its prompt,
        sizes, batch) or the resource limits, run before the job is queued. Raise
        :func:`modules.extensions.script_args.argument_error` (a 422 naming the argument)."""

    def elem_id(self, item_id: str) -> str:
        """A1111's element id: ``<tab>_script_<title>_<item>`` with the title reduced to ``[a-z_0-9]``."""
        need_tabname = self.show(True) == self.show(False)
        tabkind = "img2img" if self.is_img2img else "txt2img"
        tabname = f"{tabkind}_" if need_tabname else ""
        title = re.sub(r"[^a-z_0-9]", "", re.sub(r"\s", "_", self.title().lower()))
        return f"script_{tabname}{title}_{item_id}"

    @property
    def api_name(self) -> str:
        return self.title().lower()

    @property
    def arg_count(self) -> int:
        if self.args_from is None or self.args_to is None:
            return 0
        return self.args_to - self.args_from


class ScriptBuiltinUI(Script):
    setup_for_ui_only = True


def script_basedir(path: str | None) -> str:
    """The extension (or web UI) folder holding ``path``'s ``scripts/`` folder."""
    if not path:
        return os.getcwd()
    return os.path.dirname(os.path.dirname(os.path.abspath(path)))
