"""sd-webui-controlnet's routes: ``/controlnet/model_list``, ``/controlnet/module_list``, ``/controlnet/detect``,
``/controlnet/version``. Preprocessing in ``detect`` is CPU image work (no model weights), so it runs on the
bounded request-side CPU pool (``services.cpu_work``) instead of the GPU queue, after the resolution and image
size limits are checked."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from modules.controlnet.units import MAX_PROCESSOR_RES
from modules.core.validation import StrictInput
from modules.services import ControlNetApi, Services

API_VERSION = 2
MAX_DETECT_IMAGES = 16


class DetectRequest(StrictInput):
    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list, max_length=MAX_DETECT_IMAGES)
    controlnet_processor_res: int = Field(512, ge=-1, le=MAX_PROCESSOR_RES)
    controlnet_threshold_a: float = Field(-1, ge=-1, le=1024)
    controlnet_threshold_b: float = Field(-1, ge=-1, le=1024)


def _service(services: Services) -> ControlNetApi:
    service = services.controlnet
    if service is None:  # before the warm-up: listing needs no torch, so build one on the spot
        from modules.controlnet.service import ControlNetService

        built = ControlNetService(services.settings.model_paths.controlnet, limits=services.settings.limits)
        services.controlnet = built
        return built
    return service


def build_router(services: Services) -> APIRouter:
    router = APIRouter(prefix="/controlnet", tags=["controlnet"])

    @router.get("/version")
    def version() -> dict[str, int]:
        return {"version": API_VERSION}

    @router.get("/model_list")
    def model_list(update: bool = True) -> dict[str, list[str]]:
        return _service(services).model_list(update)

    @router.get("/module_list")
    def module_list(alias_names: bool = False) -> dict[str, object]:
        return _service(services).module_list(alias_names)

    @router.post("/detect")
    async def detect(request: DetectRequest) -> dict[str, Any]:
        return await services.cpu_work.run(_service(services).detect, request.controlnet_module,
                                           request.controlnet_input_images, request.controlnet_processor_res,
                                           request.controlnet_threshold_a, request.controlnet_threshold_b)

    return router
