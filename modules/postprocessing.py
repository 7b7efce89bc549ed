"""A1111's ``modules.postprocessing`` (the extras tab's positional UI calls). Easel's extras run as jobs built
from a typed request (``/sdapi/v1/extra-single-image``); the positional calls are refused with a clear error."""

from __future__ import annotations

from typing import Any

from modules.extensions.incompatible import IncompatibleSurfaceError, guard


def _refuse(name: str) -> Any:
    raise IncompatibleSurfaceError(f"modules.postprocessing.{name}", "A1111's positional extras-tab call",
                                   guard().importing_extension())


def run_postprocessing(*args: Any, **kwargs: Any) -> Any:
    return _refuse("run_postprocessing")


def run_postprocessing_webui(*args: Any, **kwargs: Any) -> Any:
    return _refuse("run_postprocessing_webui")


def run_extras(*args: Any, **kwargs: Any) -> Any:
    return _refuse("run_extras")
