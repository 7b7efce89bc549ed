"""The extension-side services: prompt features (styles, wildcards, LoRA, embeddings) and the scripts service.

:func:`build_extension_services` builds them once; the composition root (``webui.wire_processing_core``) plugs
them into generation and binds the A1111 façade before (scripts import ``modules.shared`` when they load).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
        allow_install=bool(settings.flags.allow_extension_install))
    scripts.load()
    if build_ui_defaults:
        try:
            scripts.setup_ui()
        except Exception:  # gradio missing or broken: scripts still run with the args given by requests
            log.exception("script argument defaults could not be read from their ui()")
    return ExtensionServices(styles, networks, features, scripts, callbacks)
