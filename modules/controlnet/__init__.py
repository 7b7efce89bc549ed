"""ControlNet: units (model, preprocessor, image, weight, guidance range, control mode) applied inside Easel's
denoising loop for txt2img, img2img and hires fix, with sd-webui-controlnet's API shapes."""

from __future__ import annotations

from typing import Any


def install(services: Any) -> None:
    """Warm-up hook: ``services.extensions["controlnet"]`` and the generation customizer that reads
    ``alwayson_scripts["controlnet"]``. Call it after the generation service is built."""
    from modules.controlnet.service import ControlNetService

    service = ControlNetService(services.settings.model_paths.controlnet)
    services.extensions["controlnet"] = service
    if services.generation is not None:
        services.generation.customizers.append(service.customize)
