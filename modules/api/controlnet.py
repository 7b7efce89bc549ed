"""sd-webui-controlnet's routes: ``/controlnet/model_list``, ``/controlnet/module_list``, ``/controlnet/detect``,
``/controlnet/version``. Preprocessing in ``detect`` is CPU image work (no model weights), so it runs in the
request thread instead of the GPU queue."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from modules.services import ControlNetApi, Services

API_VERSION = 2


class DetectRequest(BaseModel):
    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list)
    controlnet_processor_res: int = 512
    controlnet_threshold_a: float = -1
    controlnet_threshold_b: float = -1


def _service(services: Services) -> ControlNetApi:
    service = services.controlnet
    if service is None:  # before the warm-up: listing needs no torch, so build one on the spot
        from modules.controlnet.service import ControlNetService

        built = ControlNetService(services.settings.model_paths.controlnet)
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
    def detect(request: DetectRequest) -> dict[str, object]:
        return _service(services).detect(request.controlnet_module, request.controlnet_input_images,
                                         request.controlnet_processor_res, request.controlnet_threshold_a,
                                         request.controlnet_threshold_b)

    return router
