"""A1111's ``modules.scripts`` for drop-in extension scripts (a façade; Easel's core never imports it).

``Script``, ``AlwaysVisible``, ``PostprocessImageArgs``, ``PostprocessBatchListArgs`` and ``basedir()`` are what
scripts use at import time; ``scripts_txt2img``/``scripts_img2img`` (the tab runners) resolve from the bound
scripts service.
"""

from __future__ import annotations

from typing import Any

from modules.extensions import compat
from modules.extensions.runner import ScriptRunner
from modules.extensions.script_api import (
    AlwaysVisible,
    OnComponent,
    PostprocessBatchListArgs,
    Script,
    ScriptBuiltinUI,
)
from modules.processing.run import ImageHolder as PostprocessImageArgs
from modules.processing.run import SampledLatents as PostSampleArgs

__all__ = ["AlwaysVisible", "OnComponent", "PostSampleArgs", "PostprocessBatchListArgs", "PostprocessImageArgs",
           "Script", "ScriptBuiltinUI", "ScriptRunner", "basedir"]


def basedir() -> str:
    """The folder of the extension whose script is being loaded (the web UI root otherwise)."""
    from modules.core.paths import REPO_ROOT

    current = compat.binding().current_basedir
    return str(current if current is not None else REPO_ROOT)


def __getattr__(name: str) -> Any:
    if name in ("scripts_txt2img", "scripts_img2img"):
        service = _scripts_service()
        if service is None:
            return None
        return service.runner(name == "scripts_img2img")
    if name in ("script_callbacks", "shared", "paths", "errors", "scripts_postprocessing", "script_loading",
                "extensions"):
        import importlib

        return importlib.import_module(f"modules.{name}")  # A1111's modules.scripts imports these
    if name in ("list_scripts", "list_files_with_name", "ScriptFile"):
        from modules.extensions import a1111_extensions

        return getattr(a1111_extensions, name)
    if name == "scripts_data":
        service = _scripts_service()
        return [] if service is None else [*service.scripts(False), *service.scripts(True)]
    raise AttributeError(f"module 'modules.scripts' has no attribute {name!r}")


def _scripts_service() -> compat.ScriptRunners | None:
    services = compat.binding().services
    return services.scripts if services is not None else None
