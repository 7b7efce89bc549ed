"""The extension-side services: prompt features (styles, wildcards, LoRA, embeddings) and the scripts service.

:func:`build_extension_services` builds them once; the composition root (``webui.wire_processing_core``) plugs
them into generation and binds the A1111 façade before (scripts import ``modules.shared`` when they load).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.core.paths import REPO_ROOT
from modules.core.settings import Settings
from modules.extensions.callbacks import CallbackRegistry
from modules.extensions.networks import CurrentModel, NetworksService
from modules.extensions.prompts import PromptFeatures, StylesService
from modules.extensions.scripts_service import ScriptsService

log = logging.getLogger(__name__)


@dataclass
class ExtensionServices:
    styles: StylesService
    networks: NetworksService
    prompt_features: PromptFeatures
    scripts: ScriptsService
    callbacks: CallbackRegistry


def build_extension_services(settings: Settings, current_model: CurrentModel, callbacks: CallbackRegistry, *,
                             builtin_dirs: Sequence[Path] | None = None,
                             extension_roots: Sequence[Path] | None = None,
                             build_ui_defaults: bool = True) -> ExtensionServices:
    """Styles, networks and prompt features, then the scripts and extensions (loaded, with their ``ui()``
    defaults read when gradio is there)."""
    styles = StylesService(settings.data_paths.styles_file)
    networks = NetworksService(settings.model_paths.lora, settings.model_paths.embeddings,
                               allow_pickle=settings.flags.allow_pickle, current_model=current_model)
    wildcard_dirs = [settings.data_paths.wildcards_dir]
    beside_models = settings.model_paths.root.parent / "wildcards"
    if beside_models.resolve() != settings.data_paths.wildcards_dir.resolve():
        wildcard_dirs.append(beside_models)
    features = PromptFeatures(styles, networks, wildcard_dirs)
    scripts = ScriptsService(
        builtin_dirs=list(builtin_dirs if builtin_dirs is not None else [REPO_ROOT / "scripts"]),
        extension_roots=list(extension_roots if extension_roots is not None else [REPO_ROOT / "extensions"]),
        disabled=lambda: settings.options.disabled_extensions,
        allow_install=bool(settings.flags.allow_extension_install), limits=settings.limits,
        launch_args=lambda: {**settings.flags.model_dump(mode="json", exclude={"auth", "api_auth"}),
                             **getattr(settings, "extension_flags", {})})
    ui_config = settings.data_paths.root / "ui-config.json"  # A1111's saved UI defaults; extensions read it
    if not ui_config.exists():
        from modules.core.atomic import atomic_write_json

        atomic_write_json(ui_config, {})
    try:  # extension modules build Gradio 3 UIs from import time on
        from modules.extensions import gradio3

        gradio3.install()
    except ImportError:
        log.info("gradio is not installed: extension UIs cannot be built")
    scripts.load()
    # A1111 registers extension options when its UI builds; Easel does it here, so they exist (readable, listed
    # by /sdapi/v1/options, settable) with and without the browser UI.
    callbacks.call("ui_settings")
    if not settings.data_paths.config_file.exists():  # A1111 writes it at start-up; extensions read the file
        settings.save()
    if build_ui_defaults:
        try:
            scripts.setup_ui()
        except Exception:  # gradio missing or broken: scripts still run with the args given by requests
            log.exception("script argument defaults could not be read from their ui()")
    return ExtensionServices(styles, networks, features, scripts, callbacks)


def prepare_runtime(services: Any, binding: Any, extension_roots: Sequence[Path] | None = None) -> None:
    """Before scripts load: A1111's option defaults, the guard that refuses A1111 internals by name, and the
    image-saving callbacks on every save of the image store."""
    from modules.extensions.callbacks import ImageSaveCallbacks
    from modules.extensions.incompatible import install_guard
    from modules.shared import OptionInfo

    binding.options.register_a1111_defaults(OptionInfo)
    try:  # imported before scripts: some define component classes that claim this module as theirs
        import modules.ui_components  # noqa: F401
    except ImportError:  # no gradio: scripts still run with the args requests give
        log.warning("gradio is not importable; extension UIs are unavailable")
    install_guard(list(extension_roots if extension_roots is not None else [REPO_ROOT / "extensions"]))
    listeners = services.image_store.listeners
    if not any(isinstance(listener, ImageSaveCallbacks) for listener in listeners):
        from modules.extensions import compat

        listeners.append(ImageSaveCallbacks(compat.callbacks))


def _gradio_blocks(app: Any) -> Any:
    from starlette.routing import Mount

    for route in app.router.routes:
        if isinstance(route, Mount) and route.path in ("", "/"):
            inner = getattr(route.app, "gradio_app", route.app)
            get_blocks = getattr(inner, "get_blocks", None)
            if callable(get_blocks):
                return get_blocks()
    return None


def _keep_ui_mount_last(app: Any) -> None:
    """Routes added after the UI was mounted at ``/`` would be shadowed by it: the mount goes back to the end."""
    from starlette.routing import Mount

    routes = app.router.routes
    root_mounts = [route for route in routes if isinstance(route, Mount) and route.path in ("", "/")]
    if root_mounts:
        routes[:] = [route for route in routes if route not in root_mounts] + root_mounts


def app_started(services: Any, app: Any) -> None:
    """A1111's ``app_started(demo, app)``: once the API (and, without ``--nowebui``, the UI) is mounted on the
    real FastAPI app; ``demo`` is the UI's ``gr.Blocks`` or None. Routes the callbacks add answer at once."""
    registry = getattr(services, "callbacks", None)
    if registry is None:
        return
    demo = _gradio_blocks(app)
    registry.call("app_started", demo, app)
    _keep_ui_mount_last(app)


def stop(services: Any, *, restarting: bool = False) -> None:
    """Shutdown: A1111's ``before_reload`` (on a restart) and ``script_unloaded`` callbacks."""
    registry = getattr(services, "callbacks", None)
    if registry is None:
        return
    if restarting:
        registry.call("before_reload")
    registry.call("script_unloaded")
