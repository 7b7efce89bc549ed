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
    settings = services.settings
    binding = compat.bind(services)
    services.extensions["callbacks"] = binding.callbacks

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
        extension_roots=list(extension_roots if extension_roots is not None else [REPO_ROOT / "extensions"]),
        disabled=lambda: settings.options.disabled_extensions,
        allow_install=bool(settings.flags.allow_extension_install))
    services.extensions["scripts"] = scripts
    try:  # extension modules build Gradio 3 UIs from import time on
        from modules.extensions import gradio3

        gradio3.install()
    except ImportError:
        log.info("gradio is not installed: extension UIs cannot be built")
    scripts.load()
    if build_ui_defaults:
        try:
            scripts.setup_ui()
        except Exception:  # gradio missing or broken: scripts still run with the args given by requests
            log.exception("script argument defaults could not be read from their ui()")
    generation.customizers.append(scripts.customize)
    generation.executors.append(scripts.execute)
    if manager is not None and hasattr(manager, "on_model_loaded"):
        manager.on_model_loaded(lambda model: binding.callbacks.call("model_loaded", model.pipe))
