"""Upscalers: "None"/"Lanczos"/"Nearest", ESRGAN-family models from ``models/ESRGAN``, and hires latent modes.

:func:`install` is the warm-up hook that wires them (and the features built on them) into the services.
"""

from __future__ import annotations

from typing import Any


def install(services: Any) -> None:
    """Warm-up hook: the upscaler service (``services.extensions["upscalers"]``), pixel upscalers for hires fix,
    per-run tiling on the generation processor, and the ``extras`` job runner (``services.extensions["extras"]``).
    Call it after the generation service is built."""
    from modules.processing import tiling
    from modules.processing.extras import ExtrasService
    from modules.upscalers.service import DEFAULT_TILE, DEFAULT_TILE_OVERLAP, UpscalerService

    settings = services.settings

    def tile_settings() -> tuple[int, int]:  # A1111 option keys; Options keeps unknown keys
        options = settings.options
        return (int(getattr(options, "ESRGAN_tile", DEFAULT_TILE)),
                int(getattr(options, "ESRGAN_tile_overlap", DEFAULT_TILE_OVERLAP)))

    device = getattr(services.device, "device", None)
    upscalers = UpscalerService(settings.model_paths.esrgan, device=device, allow_pickle=settings.flags.allow_pickle,
                                tile_settings=tile_settings)
    services.extensions["upscalers"] = upscalers
    extras = ExtrasService(settings=settings, upscalers=upscalers, image_store=services.image_store)
    services.extensions["extras"] = extras
    services.register_runner("extras", extras.run_job)
    if services.generation is not None:
        processor = services.generation.processor
        processor.upscalers = upscalers
        tiling.install(processor)
