"""Wiring of scripts, extensions and prompt features into Easel's services (called once from the warm-up).

After :func:`install`, ``services.extensions`` holds ``scripts`` (:class:`ScriptsService`), ``networks``
(:class:`NetworksService`), ``styles`` (:class:`StylesService`) and ``callbacks`` (the A1111 callback
registry); the generation service has the script customizer/executor and the prompt preprocessor/finalizer;
the A1111 façade modules are bound to ``services``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modules.core.paths import REPO_ROOT
from modules.extensions import compat
from modules.extensions.networks import NetworksService
from modules.extensions.prompts import PromptFeatures, StylesService
from modules.extensions.scripts_service import ScriptsService

log = logging.getLogger(__name__)


def install(services: Any, *, builtin_dirs: Sequence[Path] | None = None,
            extension_roots: Sequence[Path] | None = None, build_ui_defaults: bool = True) -> None:
    """Bind the façade, load scripts and extensions, and hook prompt features into generation."""
    from modules.extensions.callbacks import ImageSaveCallbacks
    from modules.extensions.incompatible import install_guard
    from modules.shared import OptionInfo

    settings = services.settings
    binding = compat.bind(services)
    services.extensions["callbacks"] = binding.callbacks
    services.extensions["options"] = binding.options
    binding.options.register_a1111_defaults(OptionInfo)
    roots = list(extension_roots if extension_roots is not None else [REPO_ROOT / "extensions"])
    install_guard(roots)
    if not any(isinstance(listener, ImageSaveCallbacks) for listener in services.image_store.listeners):
        services.image_store.listeners.append(ImageSaveCallbacks(compat.callbacks))

    styles = StylesService(settings.data_paths.styles_file)
    manager = services.manager
    networks = NetworksService(settings.model_paths.lora, settings.model_paths.embeddings,
                               allow_pickle=settings.flags.allow_pickle,
                               current_model=lambda: manager.current if manager is not None else None)
    wildcard_dirs = [settings.data_paths.wildcards_dir]
    beside_models = settings.model_paths.root.parent / "wildcards"
    if beside_models.resolve() != settings.data_paths.wildcards_dir.resolve():
        wildcard_dirs.append(beside_models)
    features = PromptFeatures(styles, networks, wildcard_dirs)
    services.extensions["styles"] = styles
    services.extensions["networks"] = networks
    services.extensions["prompt_features"] = features

    generation = services.generation
    generation.processor.prompt_preprocessors.append(features.preprocess)
    generation.processor.finalizers.append(features.finalize)

    scripts = ScriptsService(
        builtin_dirs=list(builtin_dirs if builtin_dirs is not None else [REPO_ROOT / "scripts"]),
        extension_roots=roots,
        disabled=lambda: settings.options.disabled_extensions,
        allow_install=bool(settings.flags.allow_extension_install),
        launch_args=lambda: {**settings.flags.model_dump(mode="json", exclude={"auth", "api_auth"}),
                             **getattr(settings, "extension_flags", {})})
    services.extensions["scripts"] = scripts
    try:  # extension modules build Gradio 3 UIs from import time on
        from modules.extensions import gradio3

        gradio3.install()
    except ImportError:
        log.info("gradio is not installed: extension UIs cannot be built")
    scripts.load()
    # A1111 registers extension options when its UI builds; Easel does it here, so they exist (readable, listed
    # by /sdapi/v1/options, settable) with and without the browser UI.
    binding.callbacks.call("ui_settings")
    if build_ui_defaults:
        try:
            scripts.setup_ui()
        except Exception:  # gradio missing or broken: scripts still run with the args given by requests
            log.exception("script argument defaults could not be read from their ui()")
    generation.customizers.append(scripts.customize)
    generation.executors.append(scripts.execute)
    if manager is not None and hasattr(manager, "on_model_loaded"):
        manager.on_model_loaded(lambda model: binding.callbacks.call("model_loaded", model.pipe))


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
    registry = services.extensions.get("callbacks")
    if registry is None:
        return
    demo = _gradio_blocks(app)
    registry.call("app_started", demo, app)
    _keep_ui_mount_last(app)


def stop(services: Any, *, restarting: bool = False) -> None:
    """Shutdown: A1111's ``before_reload`` (on a restart) and ``script_unloaded`` callbacks."""
    registry = services.extensions.get("callbacks")
    if registry is None:
        return
    if restarting:
        registry.call("before_reload")
    registry.call("script_unloaded")
