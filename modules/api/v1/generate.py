"""``/sdapi/v1/txt2img`` and ``/sdapi/v1/img2img``: submit a generation job and await it."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from modules.api import generation
from modules.api.schemas import ImageToImageResponse, TextToImageResponse
from modules.api.v1.common import SOURCE
from modules.processing.params import GenerationParams, Img2ImgParams, Txt2ImgParams
from modules.services import Services


def build_router(services: Services) -> APIRouter:
    router = APIRouter()
    queue = services.queue

    async def generate(kind: str, params: GenerationParams) -> dict[str, Any]:
        await generation.wait_ready(services)
        params = await generation.prepare(services, params)
        job = await generation.submit(services, kind, params, source=SOURCE)
        final = await queue.wait_async(job.id)
        generation.raise_for_job(final)
        paths = generation.result_paths(services, final) if params.send_images else []
        images = await asyncio.to_thread(generation.read_base64, paths)
        return {"images": images, "parameters": generation.echo_parameters(params),
                "info": (final.result or {}).get("info", "")}

    @router.post("/txt2img", response_model=TextToImageResponse)
    async def txt2img(params: Txt2ImgParams) -> dict[str, Any]:
        """Text to image. Fields and defaults are A1111's; null means the default."""
        return await generate("txt2img", params)

    @router.post("/img2img", response_model=ImageToImageResponse)
    async def img2img(params: Img2ImgParams) -> dict[str, Any]:
        """Image to image and inpainting (``init_images``, ``mask``)."""
        return await generate("img2img", params)

    return router
