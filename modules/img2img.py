"""A1111's ``modules.img2img``: the img2img UI entry points (see :mod:`modules.txt2img` for why they refuse)."""

from __future__ import annotations

from typing import Any

from modules.extensions.incompatible import IncompatibleSurfaceError, guard


def img2img(id_task: str, request: Any, mode: int, *args: Any) -> Any:
    raise IncompatibleSurfaceError("modules.img2img.img2img", "A1111's positional img2img UI call",
                                   guard().importing_extension())


def process_batch(p: Any, input_dir: str, output_dir: str, inpaint_mask_dir: str, args: Any,
                  to_scale: bool = False, scale_by: float = 1.0, use_png_info: bool = False,
                  png_info_props: Any = None, png_info_dir: Any = None) -> Any:
    raise IncompatibleSurfaceError("modules.img2img.process_batch", "A1111's img2img batch-folder UI action",
                                   guard().importing_extension())
