"""The scripts service: discovery + loading + the two tab runners, and its wiring into generation.

``services.scripts`` is this object. The API calls :meth:`titles`, :meth:`script_info` and
:meth:`validate`; the UI renders :meth:`scripts` (their ``ui()``) and builds a request with ``script_name`` /
``script_args`` / ``alwayson_scripts``; generation calls :meth:`customize` (attach hooks to a run) and
:meth:`execute` (a selected script's ``run(p, *args)``).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.core.limits import Limits
from modules.extensions import compat
from modules.extensions.callbacks import CfgCallbackHooks
from modules.extensions.discovery import (
    Extension,
    collect_script_files,
    discover_extensions,
    run_install_scripts,
)
from modules.extensions.postprocessing import PostprocessingRunner
from modules.extensions.runner import RunScriptHooks, ScriptError, ScriptRunner, classes_from_files
from modules.extensions.script_api import Script

log = logging.getLogger(__name__)


@dataclass
class ScriptsService:
    builtin_dirs: list[Path]
    extension_roots: list[Path]
    disabled: Callable[[], Iterable[str]] = lambda: ()
    allow_install: bool = False
    launch_args: Callable[[], dict[str, Any]] = dict
    extensions: list[Extension] = field(default_factory=list)
    errors: list[ScriptError] = field(default_factory=list)
    runners: dict[bool, ScriptRunner] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    install_results: list[Any] = field(default_factory=list)
    postprocessing: PostprocessingRunner | None = None  # extension ScriptPostprocessing scripts (the extras job)

    def load(self) -> None:
        """Discover, (optionally) install, and load every script; reports problems, never raises."""
        self.extensions = discover_extensions(self.extension_roots, self.disabled())
        self.install_results = run_install_scripts(self.extensions, allowed=self.allow_install,
                                                   launch_args=self.launch_args())
        for extension in self.extensions:
            for problem in extension.problems:
                log.warning("extension %s: %s", extension.name, problem)
        files = collect_script_files(self.builtin_dirs, self.extensions)
        found: list[tuple[type, str, str]] = []
        classes = classes_from_files(files, self.errors, found)
        self.postprocessing = PostprocessingRunner(found)
        self.runners = {
            False: ScriptRunner(classes, is_img2img=False, errors=self.errors),
            True: ScriptRunner(classes, is_img2img=True, errors=self.errors),
        }
        log.info("scripts: %d loaded (%d always-on), %d errors", len(classes),
                 len(self.runners[False].alwayson_scripts), len(self.errors))

    def setup_ui(self, gradio: Any | None = None) -> None:
        """Lay out arguments and read defaults from every ``ui()`` (imports gradio: call off the request path)."""
        for runner in self.runners.values():
            runner.setup_ui(gradio)

    # -- public API for the REST API and UI ------------------------------------------------------------------
    def runner(self, is_img2img: bool) -> ScriptRunner:
        runner = self.runners[bool(is_img2img)]
        if not runner.ui_ready:
            runner.setup_ui()
        return runner

    @property
    def scripts_txt2img(self) -> ScriptRunner:
        return self.runner(False)

    @property
    def scripts_img2img(self) -> ScriptRunner:
        return self.runner(True)

    def titles(self, is_img2img: bool) -> list[str]:
        """Selectable script titles, lower-cased (``/sdapi/v1/scripts``)."""
        return [script.title().lower() for script in self.runners[bool(is_img2img)].selectable_scripts]

    def scripts(self, is_img2img: bool) -> list[Script]:
        """Script objects of a tab (always-on first). Their ``args_from``/``args_to`` are laid out by the first
        :meth:`runner` call; the page build lists them before that, so the scripts see its components first."""
        runner = self.runners[bool(is_img2img)]
        return [*runner.alwayson_scripts, *runner.selectable_scripts]

    def script_info(self) -> list[dict[str, Any]]:
        return [*self.runner(False).info(), *self.runner(True).info()]

    def validate(self, params: Any, *, limits: Any = None, init_sizes: list[tuple[int, int]] | None = None
                 ) -> list[Any]:
        """Raise ``UserInputError`` (422) for an unknown ``script_name``, a bad ``alwayson_scripts`` entry or a
        script argument its declaration (``api_args``) or its ``check_args`` refuses; before queueing."""
        runner = self.runner(bool(getattr(params, "is_img2img", False)))
        args = runner.script_args(params.script_name, params.script_args, params.alwayson_scripts)
        runner.check_args(args, params, limits or self.limits, list(init_sizes or []))
        return args

    def extensions_info(self) -> list[dict[str, Any]]:
        """``/sdapi/v1/extensions`` entries."""
        return [_extension_info(extension) for extension in self.extensions]

    def extension_status(self) -> list[dict[str, Any]]:
        """Per extension: ``status`` is ``disabled``, ``incompatible`` (it needs an A1111 internal that Easel's
        diffusers core does not have; ``reason`` says which), ``error`` (a script failed to load) or ``ok``;
        ``problems`` lists every load error and metadata problem."""
        status = []
        for extension in self.extensions:
            errors = [error for error in self.errors if error.owner == extension.name]
            refused = [error for error in errors if error.incompatible]
            if not extension.enabled:
                state, reason = "disabled", "disabled in settings"
            elif refused:
                state, reason = "incompatible", refused[0].message
            elif errors:
                state, reason = "error", errors[0].message
            else:
                state, reason = "ok", ""
            status.append({"name": extension.name, "enabled": extension.enabled, "status": state, "reason": reason,
                           "needs": sorted({error.incompatible for error in refused if error.incompatible}),
                           "problems": [*extension.problems, *(f"{Path(error.where).name}: {error.message}"
                                                               for error in errors)]})
        return status

    # -- generation wiring -----------------------------------------------------------------------------------
    def customize(self, run: Any, params: Any) -> None:
        """Attach the tab's script hooks and the CFG callbacks to a run (a ``GenerationService`` customizer)."""
        from modules.extensions.a1111_processing import adopt_run

        adopt_run(run)
        runner = self.runner(bool(getattr(params, "is_img2img", False)))
        run.script_args = runner.script_args(params.script_name, params.script_args, params.alwayson_scripts)
        # Again at run time: jobs the UI queues did not pass through the API's checks.
        runner.check_args(run.script_args, params, self.limits,
                          [image.size for image in getattr(run, "init_images", None) or []])
        run.scripts = runner
        if runner.alwayson_scripts:
            run.hooks.append(RunScriptHooks(runner))
        registry = compat.callbacks()
        if registry.has("extra_noise"):
            from modules.extensions.callbacks import ExtraNoiseCallbacks

            run.hooks.append(ExtraNoiseCallbacks(registry))
        if any(registry.has(point) for point in ("cfg_denoiser", "cfg_denoised", "cfg_after_cfg")):
            run.denoise_hooks.append(CfgCallbackHooks(registry))

    def execute(self, run: Any, params: Any, process: Callable[[Any], Any]) -> Any | None:
        """A ``GenerationService`` executor: the selected script's ``run(p, *args)``, else None."""
        runner = run.scripts if isinstance(run.scripts, ScriptRunner) else None
        if runner is None or runner.selected_script(run.script_args) is None:
            return None
        return runner.run_selected(run, process)


def _git(path: Path, *args: str) -> str | None:
    if not (path / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def _extension_info(extension: Extension) -> dict[str, Any]:
    commit = _git(extension.path, "rev-parse", "HEAD")
    date = _git(extension.path, "log", "-1", "--format=%ct")
    return {
        "name": extension.name,
        "remote": _git(extension.path, "config", "--get", "remote.origin.url"),
        "branch": _git(extension.path, "rev-parse", "--abbrev-ref", "HEAD"),
        "commit_hash": commit,
        "commit_date": int(date) if date and date.isdigit() else None,
        "version": commit[:8] if commit else "",
        "enabled": extension.enabled,
    }
