"""A1111's ``modules.txt2img``: the txt2img UI entry points. A1111 calls them with the UI's positional argument
list, which Easel's UI does not have (it builds a typed request from named fields); extensions that need a
generation build ``StableDiffusionProcessingTxt2Img`` and call ``modules.processing.process_images``."""

from __future__ import annotations

from typing import Any

from modules.extensions.incompatible import IncompatibleSurfaceError, guard


def _refuse(name: str) -> Any:
    raise IncompatibleSurfaceError(f"modules.txt2img.{name}", "A1111's positional txt2img UI call",
                                   guard().importing_extension())


def txt2img(id_task: str, request: Any, *args: Any) -> Any:
    return _refuse("txt2img")


def txt2img_create_processing(id_task: str, request: Any, *args: Any, force_enable_hr: bool = False) -> Any:
    return _refuse("txt2img_create_processing")


def txt2img_upscale(id_task: str, request: Any, gallery: Any, gallery_index: Any, generation_info: Any,
                    *args: Any) -> Any:
    return _refuse("txt2img_upscale")
