"""ControlNet: units (model, preprocessor, image, weight, guidance range, control mode) applied inside Easel's
denoising loop for txt2img, img2img and hires fix, with sd-webui-controlnet's API shapes. A unit's model is a
ControlNet, a T2I-Adapter or an IP-Adapter from ``models/ControlNet``."""

from __future__ import annotations

from typing import Any


def install(services: Any) -> None:
    """Warm-up hook: ``services.extensions["controlnet"]``, the generation customizer that reads
    ``alwayson_scripts["controlnet"]`` and the processor finalizer that undoes IP-Adapter patches. Call it after
    the generation service is built."""
    from modules.controlnet.service import ControlNetService

    service = ControlNetService(services.settings.model_paths.controlnet, limits=services.settings.limits)
    services.extensions["controlnet"] = service
    if services.generation is not None:
        services.generation.customizers.append(service.customize)
        services.generation.processor.finalizers.append(service.finalize)
