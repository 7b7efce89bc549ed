"""``/sdapi/v1`` lists: samplers, schedulers, upscalers, face restorers, styles, embeddings, LoRAs, scripts and
extensions. A list whose service the warm-up has not built yet is empty (or the built-in entries)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from modules.api.runners import BUILTIN_UPSCALERS
from modules.api.schemas import (
    FaceRestorerItem,
    LatentUpscalerModeItem,
    PromptStyleItem,
    SamplerItem,
    SchedulerItem,
    ScriptsList,
    UpscalerItem,
)
from modules.services import Services

LATENT_UPSCALE_MODES = ("Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
                        "Latent (nearest)", "Latent (nearest-exact)")


def build_router(services: Services) -> APIRouter:
    router = APIRouter()

    @router.get("/samplers", response_model=list[SamplerItem])
    async def samplers() -> list[dict[str, Any]]:
        return [{"name": spec.name, "aliases": list(spec.aliases),
                 "options": {"note": spec.note} if spec.note else {}} for spec in services.samplers.samplers]

    @router.get("/schedulers", response_model=list[SchedulerItem])
    async def schedulers() -> list[dict[str, Any]]:
        return [{"name": item.name, "label": item.label, "aliases": list(item.aliases) or None, "default_rho": -1,
                 "need_inner_model": False} for item in services.samplers.schedules]

    @router.get("/upscalers", response_model=list[UpscalerItem])
    async def upscalers() -> list[dict[str, Any]]:
        """The upscaler service's list, else (before the warm-up) the built-in three."""
        provider = services.upscalers
        if provider is not None:
            return list(provider.list())
        return [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": None}
                for name in BUILTIN_UPSCALERS]

    @router.get("/latent-upscale-modes", response_model=list[LatentUpscalerModeItem])
    async def latent_upscale_modes() -> list[dict[str, Any]]:
        provider = services.upscalers
        if provider is not None:
            return list(provider.latent_modes())
        return [{"name": name} for name in LATENT_UPSCALE_MODES]

    @router.get("/hypernetworks")
    async def hypernetworks() -> list[dict[str, Any]]:
        """Easel does not load hypernetworks; the list is always empty."""
        return []

    @router.get("/face-restorers", response_model=list[FaceRestorerItem])
    async def face_restorers() -> list[dict[str, Any]]:
        """The installed face restorers; none on a bare install, where A1111 would list models it downloads on
        first use."""
        provider = services.faces
        return list(provider.list()) if provider is not None else []

    @router.get("/realesrgan-models")
    async def realesrgan_models() -> list[dict[str, Any]]:
        """The RealESRGAN models among the upscalers, in A1111's ``{name, path, scale}`` shape."""
        provider = services.upscalers
        if provider is None:
            return []
        return [{"name": item["name"], "path": item.get("model_path"), "scale": item.get("scale")}
                for item in provider.list() if "realesrgan" in str(item["name"]).lower().replace("-", "")]

    @router.get("/prompt-styles", response_model=list[PromptStyleItem])
    async def prompt_styles() -> list[dict[str, Any]]:
        provider = services.styles
        return list(provider.styles()) if provider is not None else []

    @router.get("/embeddings")
    async def embeddings() -> dict[str, Any]:
        provider = services.networks
        return dict(provider.embeddings()) if provider is not None else {"loaded": {}, "skipped": {}}

    @router.post("/refresh-embeddings")
    async def refresh_embeddings() -> dict[str, Any]:
        provider = services.networks
        if provider is not None:
            await run_in_threadpool(provider.refresh_embeddings)
        return {}

    @router.get("/loras")
    async def loras() -> list[dict[str, Any]]:
        provider = services.networks
        return list(provider.loras()) if provider is not None else []

    @router.post("/refresh-loras")
    async def refresh_loras() -> dict[str, Any]:
        provider = services.networks
        if provider is not None:
            await run_in_threadpool(provider.refresh_loras)
        return {}

    @router.get("/scripts", response_model=ScriptsList)
    async def scripts() -> dict[str, Any]:
        provider = services.scripts
        if provider is None:
            return {"txt2img": [], "img2img": []}
        return {"txt2img": list(provider.titles(False)), "img2img": list(provider.titles(True))}

    @router.get("/script-info")
    async def script_info() -> list[dict[str, Any]]:
        provider = services.scripts
        return list(provider.script_info()) if provider is not None else []

    @router.get("/extensions")
    async def extensions() -> list[dict[str, Any]]:
        provider = services.scripts
        return list(provider.extensions_info()) if provider is not None else []

    return router
