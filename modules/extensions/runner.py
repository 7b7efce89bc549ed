"""Loading script files and running A1111 ``Script`` objects around a generation.

* :func:`load_script_module` executes one file in its own module namespace (``easel_scripts.<owner>.<stem>``)
  with its extension's folder first on ``sys.path`` (A1111 extensions import their helpers as
  ``scripts.helper`` or ``lib_x``); any exception, ``SystemExit`` included, is caught and reported.
* :class:`ScriptRunner` is A1111's per-tab runner: it instantiates every ``Script`` class for txt2img or
  img2img, splits them into always-on and selectable scripts, lays out their arguments (slot 0 = selected
  script index + 1, then each script's ``args_from:args_to``) and reads their defaults from the ``ui()``
  controls' ``.value`` inside a ``gradio.Blocks()``, as A1111 does.
* :class:`RunScriptHooks` is the :class:`~modules.processing.processor.ProcessingHooks` implementation that
  calls always-on scripts' hooks with their argument slices, each call isolated.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from modules.core.errors import UserInputError
from modules.extensions import compat
from modules.extensions.discovery import ScriptFile
from modules.extensions.script_api import AlwaysVisible, PostprocessBatchListArgs, Script
from modules.extensions.ui_pass import (
    UI_BUILD_LOCK,
    PageState,
    detached_blocks,
    events_undone_on_error,
    standard_fields,
)
from modules.processing.run import ProcessingHooks

log = logging.getLogger(__name__)


@dataclass
class ScriptError:
    owner: str
    where: str  # file, or "Title.method"
    message: str
    traceback: str = ""
    incompatible: str | None = None  # the A1111 internal the extension needs, when that is why it failed


@dataclass
class LoadedScriptClass:
    cls: type[Script]
    file: ScriptFile
    module: ModuleType


def _module_name(file: ScriptFile) -> str:
    clean = "".join(ch if ch.isalnum() else "_" for ch in f"{file.owner}.{file.path.stem}")
    return f"easel_scripts.{clean}"


def load_script_module(file: ScriptFile, errors: list[ScriptError]) -> ModuleType | None:
    """Execute ``file``; on failure record the error (with its owner) and return None."""
    name = _module_name(file)
    spec = importlib.util.spec_from_file_location(name, file.path)
    if spec is None or spec.loader is None:
        errors.append(ScriptError(file.owner, str(file.path), "not a loadable Python file"))
        return None
    module = importlib.util.module_from_spec(spec)
    basedir = str(file.basedir)
    added = basedir not in sys.path
    if added:
        sys.path.insert(0, basedir)
    sys.modules[name] = module
    try:
        with compat.loading_basedir(file.basedir), compat.callbacks().loading(file.path, file.owner):
            spec.loader.exec_module(module)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        from modules.extensions.incompatible import incompatibility

        sys.modules.pop(name, None)
        refused = incompatibility(exc)
        message = str(refused) if refused is not None else f"{exc.__class__.__name__}: {exc}"
        errors.append(ScriptError(file.owner, str(file.path), message, traceback.format_exc(),
                                  refused.module if refused is not None else None))
        log.error("extension %s: script %s failed to load: %s", file.owner, file.path.name, message)
        return None
    finally:
        if added:
            try:
                sys.path.remove(basedir)
            except ValueError:
                pass
    return module


def script_classes(module: ModuleType, file: ScriptFile) -> list[LoadedScriptClass]:
    """Every ``Script`` subclass in the module's namespace, as A1111 registers them: defined there or imported
    from a helper module. Bases that never define ``title()`` are skipped (they are not scripts)."""
    found = []
    for value in list(vars(module).values()):
        if isinstance(value, type) and issubclass(value, Script) and value is not Script \
                and not getattr(value, "setup_for_ui_only", False) and value.title is not Script.title:
            found.append(LoadedScriptClass(value, file, module))
    return found


def _component_value(component: Any) -> Any:
    value = getattr(component, "value", None)
    if callable(value):
        try:
            value = value()
        except Exception:
            value = None
    return value


def _component_info(component: Any) -> dict[str, Any]:
    choices = getattr(component, "choices", None)
    if choices is not None:
        choices = [choice[1] if isinstance(choice, (tuple, list)) and len(choice) == 2 else choice
                   for choice in choices]
    return {
        "label": getattr(component, "label", None),
        "value": _component_value(component),
        "minimum": getattr(component, "minimum", None),
        "maximum": getattr(component, "maximum", None),
        "step": getattr(component, "step", None),
        "choices": choices,
    }


class ScriptRunner:
    """A1111's ``ScriptRunner`` for one tab (``is_img2img``)."""

    def __init__(self, classes: Sequence[LoadedScriptClass], *, is_img2img: bool,
                 errors: list[ScriptError]) -> None:
        self.is_img2img = is_img2img
        self.errors = errors
        self.scripts: list[Script] = []
        self.selectable_scripts: list[Script] = []
        self.alwayson_scripts: list[Script] = []
        self.titles: list[str] = []
        self.title_map: dict[str, Script] = {}
        self.inputs: list[Any] = [None]
        self.arg_infos: list[dict[str, Any]] = [{"label": "Script", "value": None}]
        self.defaults: list[Any] = [0]
        self.ui_ready = False
        self.owners: dict[int, str] = {}
        for loaded in classes:
            self._add(loaded)
        self.alwayson_scripts.sort(key=lambda s: getattr(s, "sorting_priority", 0))
        self._layout_without_ui()

    def _add(self, loaded: LoadedScriptClass) -> None:
        owner = loaded.file.owner
        try:
            script = loaded.cls()
            script.filename = str(loaded.file.path)
            script.is_txt2img = not self.is_img2img
            script.is_img2img = self.is_img2img
            script.tabname = "img2img" if self.is_img2img else "txt2img"
            visibility = script.show(self.is_img2img)
            title = script.title()
        except Exception as exc:
            self._error(owner, f"{loaded.cls.__name__}.__init__/show/title", exc)
            return
        if visibility is AlwaysVisible:
            script.alwayson = True
            self.alwayson_scripts.append(script)
        elif visibility:
            script.alwayson = False
            self.selectable_scripts.append(script)
            self.titles.append(title)
        else:
            return
        script.name = script.name or title
        self.scripts.append(script)
        self.owners[id(script)] = owner
        self.title_map[title.lower()] = script

    def _error(self, owner: str, where: str, exc: BaseException) -> None:
        message = f"{exc.__class__.__name__}: {exc}"
        self.errors.append(ScriptError(owner, where, message, traceback.format_exc()))
        log.error("extension %s: %s failed: %s", owner, where, message, exc_info=exc)

    def owner(self, script: Script) -> str:
        return self.owners.get(id(script), "unknown")

    def _ordered(self) -> list[Script]:
        return [*self.alwayson_scripts, *self.selectable_scripts]

    def _layout_without_ui(self) -> None:
        for script in self._ordered():
            script.args_from = script.args_to = 1

    def _layout_from_declarations(self) -> None:
        """Without gradio: each script's arguments are its ``api_args`` fields, defaults from the declaration."""
        defaults: list[Any] = [0]
        infos: list[dict[str, Any]] = [{"label": "Script", "value": None}]
        for script in self._ordered():
            script.controls = []
            script.args_from = len(defaults)
            declared = script.api_args.model_fields if script.api_args is not None else {}
            for name, declared_field in declared.items():
                value = None if declared_field.is_required() else declared_field.get_default(call_default_factory=True)
                defaults.append(value)
                infos.append({"label": declared_field.title or name, "value": value})
            script.args_to = len(defaults)
        self.inputs = [None] * len(defaults)
        self.arg_infos = infos
        self.defaults = defaults
        self.ui_ready = True

    def setup_ui(self, gradio: Any | None = None) -> None:
        """Run every script's ``ui()`` inside ``gr.Blocks()`` to lay out arguments and read their defaults."""
        if self.ui_ready:
            return
        if gradio is None:
            try:
                import gradio as gradio_module
            except ImportError as exc:  # a headless worker without gradio
                log.warning("gradio is not importable (%s): script arguments are laid out from their api_args "
                            "declarations; scripts without one take none", exc)
                self._layout_from_declarations()
                return
            gradio = gradio_module
        inputs: list[Any] = [None]
        infos: list[dict[str, Any]] = [{"label": "Script", "value": None}]
        scripts = self._ordered()

        def report(script: Script, exc: Exception) -> None:
            self._error(self.owner(script), f"{script.title()}.after_component", exc)

        try:
            with UI_BUILD_LOCK, detached_blocks(gradio):
                if not PageState.built:
                    standard_fields(gradio, "img2img" if self.is_img2img else "txt2img", scripts, report)
                for script in scripts:
                    controls: list[Any] = []
                    try:
                        with events_undone_on_error():
                            controls = list(script.ui(self.is_img2img) or [])
                    except Exception as exc:
                        self._error(self.owner(script), f"{script.title()}.ui", exc)
                    script.controls = controls
                    script.args_from = len(inputs)
                    inputs.extend(controls)
                    infos.extend(_component_info(control) for control in controls)
                    script.args_to = len(inputs)
        except Exception:  # the pass as a whole (Gradio serialising what the scripts built)
            log.exception("script UIs could not be laid out; arguments follow the api_args declarations")
            self._layout_from_declarations()
            return
        self.inputs = inputs
        self.arg_infos = infos
        self.defaults = [0, *(info["value"] for info in infos[1:])]
        self.ui_ready = True

    # -- lookups ---------------------------------------------------------------------------------------------
    def script(self, title: str) -> Script | None:
        return self.title_map.get(title.lower())

    def selectable_index(self, name: str) -> int | None:
        """A1111 matching of ``script_name``: the lower-cased title; SD.Next's "part before ':'" also works."""
        wanted = name.strip().lower()
        for index, script in enumerate(self.selectable_scripts):
            title = script.title().lower()
            if title == wanted or title.split(":")[0].strip() == wanted:
                return index
        return None

    def script_args(self, script_name: str | None, script_args: Sequence[Any] | None,
                    alwayson: dict[str, Any] | None) -> list[Any]:
        """The full positional args array of a request (raises the API's 422s)."""
        args = list(self.defaults)
        if script_name and script_name.strip().lower() not in ("none", ""):
            index = self.selectable_index(script_name)
            if index is None:
                raise UserInputError("script_name", f"script {script_name!r} not found; available: "
                                     f"{', '.join(s.title() for s in self.selectable_scripts) or 'none'}")
            selected = self.selectable_scripts[index]
            args[0] = index + 1
            _fill(args, selected, script_args or [])
            _validate(args, selected, "script_args")
        for title, value in (alwayson or {}).items():
            script = self.script(title)
            if script is None:
                raise UserInputError(f"alwayson_scripts.{title}", f"always-on script {title!r} not found")
            if not script.alwayson:
                raise UserInputError(f"alwayson_scripts.{title}",
                                     "a selectable script cannot be used in alwayson_scripts; use script_name")
            given = value.get("args", []) if isinstance(value, dict) else value
            if not isinstance(given, (list, tuple)):
                raise UserInputError(f"alwayson_scripts.{title}.args", "must be a list of positional arguments")
            _fill(args, script, given)
            _validate(args, script, f"alwayson_scripts.{title}.args")
        return args

    def check_args(self, args: Sequence[Any], request: Any, limits: Any,
                   init_sizes: list[tuple[int, int]]) -> None:
        """Run the ``check_args`` of the selected script and the always-on scripts the request uses."""
        used = [self.selected_script(args)]
        used += [self.script(title) for title in (getattr(request, "alwayson_scripts", None) or {})]
        for script in used:
            if script is None or script.api_args is None:
                continue
            declared = script.api_args.from_positional(_slice(args, script), _prefix(script))
            script.check_args(declared, request, limits, init_sizes)

    def selected_script(self, args: Sequence[Any]) -> Script | None:
        index = args[0] if args else 0
        if not isinstance(index, int) or index <= 0 or index > len(self.selectable_scripts):
            return None
        return self.selectable_scripts[index - 1]

    def info(self) -> list[dict[str, Any]]:
        """``/sdapi/v1/script-info`` entries of this tab."""
        return [{
            "name": script.title().lower(),
            "is_alwayson": bool(script.alwayson),
            "is_img2img": self.is_img2img,
            "args": self.arg_infos[script.args_from or 1:script.args_to or 1],
        } for script in self._ordered()]

    # -- calling scripts -------------------------------------------------------------------------------------
    def call(self, script: Script, method: str, p: Any, *extra: Any, **kwargs: Any) -> None:
        function = getattr(script, method, None)
        if function is None:
            return
        args = _slice(getattr(p, "script_args", None) or self.defaults, script)
        try:
            function(p, *extra, *args, **kwargs)
        except Exception as exc:
            self._error(self.owner(script), f"{script.title()}.{method}", exc)

    def run_alwayson(self, method: str, p: Any, *extra: Any, **kwargs: Any) -> None:
        for script in list(self.alwayson_scripts):
            self.call(script, method, p, *extra, **kwargs)

    def run_selected(self, p: Any, process: Callable[[Any], Any]) -> Any | None:
        """Run the selected script's ``run(p, *args)``; its own errors fail the job (its output *is* the job)."""
        script = self.selected_script(p.script_args)
        if script is None:
            return None
        with compat.processing_with(process):
            result = script.run(p, *_slice(p.script_args, script))
            if result is None:  # A1111 falls back to normal processing
                result = process(p)
        return result


def _fill(args: list[Any], script: Script, given: Sequence[Any]) -> None:
    start, end = script.args_from or 1, script.args_to or 1
    for offset, value in enumerate(list(given)[: end - start]):
        args[start + offset] = value


def _prefix(script: Script) -> str:
    return f"alwayson_scripts.{script.title().lower()}.args" if script.alwayson else "script_args"


def _validate(args: Sequence[Any], script: Script, field_prefix: str) -> None:
    """Check a script's argument slice against its ``api_args`` declaration (422 naming index and name)."""
    if script.api_args is not None:
        script.api_args.from_positional(_slice(args, script), field_prefix)


def _slice(args: Sequence[Any], script: Script) -> list[Any]:
    start, end = script.args_from or 1, script.args_to or 1
    return list(args[start:end])


class RunScriptHooks(ProcessingHooks):
    """Processing hooks of one run: A1111's always-on script methods, in A1111's order, each isolated."""

    def __init__(self, runner: ScriptRunner) -> None:
        self.runner = runner

    def before_process(self, run: Any) -> None:
        self.runner.run_alwayson("setup", run)
        self.runner.run_alwayson("before_process", run)

    def process(self, run: Any) -> None:
        self.runner.run_alwayson("process", run)

    def before_process_batch(self, run: Any, batch_number: int, prompts: list[str], seeds: list[int],
                             subseeds: list[int]) -> None:
        """Scripts' ``before_process_batch``, then (A1111's order) extension extra networks are activated for
        the batch's prompts and scripts' ``after_extra_networks_activate`` runs."""
        from modules import extra_networks

        self.runner.run_alwayson("before_process_batch", run, batch_number=batch_number, prompts=prompts,
                                 seeds=seeds, subseeds=subseeds)
        data: dict[str, Any] = {}
        if extra_networks.extra_network_registry and not run.disable_extra_networks:
            _, data = extra_networks.parse_prompts(list(prompts))
            data = {kind: params for kind, params in data.items() if kind not in ("lora", "lyco")}
            extra_networks.activate(run, data)
            run.extra_network_data.setdefault("extensions_activated", True)
        self.runner.run_alwayson("after_extra_networks_activate", run, batch_number=batch_number, prompts=prompts,
                                 seeds=seeds, subseeds=subseeds, extra_network_data=data)

    def before_sampling(self, run: Any, x: Any, noise: Any, c: Any, uc: Any) -> None:
        """A1111's ``process_before_every_sampling(p, x=, noise=, c=, uc=)``: before each sampling pass."""
        self.runner.run_alwayson("process_before_every_sampling", run, x=x, noise=noise, c=c, uc=uc)

    def process_batch(self, run: Any, batch_number: int, prompts: list[str], seeds: list[int],
                      subseeds: list[int]) -> None:
        self.runner.run_alwayson("process_batch", run, batch_number=batch_number, prompts=prompts, seeds=seeds,
                                 subseeds=subseeds)

    def postprocess_batch(self, run: Any, images: list[Any], batch_number: int) -> None:
        holder = PostprocessBatchListArgs(list(images))
        self.runner.run_alwayson("postprocess_batch_list", run, holder, batch_number=batch_number)
        images[:] = holder.images
        self.runner.run_alwayson("postprocess_batch", run, images=images, batch_number=batch_number)

    def postprocess_image(self, run: Any, image: Any) -> None:
        self.runner.run_alwayson("postprocess_image", run, image)

    def postprocess_image_after_composite(self, run: Any, image: Any) -> None:
        self.runner.run_alwayson("postprocess_image_after_composite", run, image)

    def before_hr(self, run: Any) -> None:
        self.runner.run_alwayson("before_hr", run)

    def post_sample(self, run: Any, samples: Any) -> None:
        self.runner.run_alwayson("post_sample", run, samples)

    def postprocess(self, run: Any, result: Any) -> None:
        self.runner.run_alwayson("postprocess", run, result)
        if run.extra_network_data.pop("extensions_activated", False):
            from modules import extra_networks

            extra_networks.deactivate(run)


def classes_from_files(files: Iterable[ScriptFile], errors: list[ScriptError],
                       postprocessing: list[tuple[type, str, str]] | None = None) -> list[LoadedScriptClass]:
    """The script classes of ``files``; a class two files share (one imports it from the other, or both from a
    helper module) is registered once, for the first file that has it. A1111 ``ScriptPostprocessing`` classes
    go to ``postprocessing`` as ``(class, owner, file)``, also once each."""
    from modules.extensions.postprocessing import postprocessing_classes

    loaded: list[LoadedScriptClass] = []
    seen: set[type] = set()
    for file in files:
        module = load_script_module(file, errors)
        if module is None:
            continue
        if postprocessing is not None:
            for cls in postprocessing_classes(module):
                if cls not in seen:
                    seen.add(cls)
                    postprocessing.append((cls, file.owner, str(file.path)))
        for found in script_classes(module, file):
            if found.cls not in seen:
                seen.add(found.cls)
                loaded.append(found)
    return loaded
