"""``/sdapi/v1/extra-single-image``, ``/sdapi/v1/extra-batch-images`` (queued post-processing) and
``/sdapi/v1/png-info`` (reading generation parameters back from an image)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from modules.api import generation
from modules.api.runners import BUILTIN_UPSCALERS, EXTRAS_BUILTIN, extras_kind
from modules.api.schemas import (
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
    PNGInfoRequest,
    PNGInfoResponse,
)
from modules.api.v1.common import SOURCE
from modules.core.errors import UserInputError
from modules.services import Services


def build_router(services: Services) -> APIRouter:
    router = APIRouter()
    queue = services.queue

    async def run_extras(request: ExtrasSingleImageRequest | ExtrasBatchImagesRequest) -> tuple[str, list[str]]:
        await generation.wait_ready(services)
        kind = extras_kind(services)
        if kind == EXTRAS_BUILTIN:
            for field, name in (("upscaler_1", request.upscaler_1), ("upscaler_2", request.upscaler_2)):
                if name not in BUILTIN_UPSCALERS:
                    allowed = ", ".join(BUILTIN_UPSCALERS)
                    raise UserInputError(field, f"unknown upscaler {name!r}; allowed: {allowed}")
        await services.cpu_work.run(_check_extras_inputs, request, services.settings.limits)
        job = await asyncio.to_thread(queue.submit, kind, request.model_dump(mode="json"), source=SOURCE)
        final = await queue.wait_async(job.id)
        generation.raise_for_job(final)
        images = await asyncio.to_thread(generation.read_base64, generation.result_paths(services, final))
        return str((final.result or {}).get("html_info", "")), images

    @router.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
    async def extra_single_image(request: ExtrasSingleImageRequest) -> dict[str, Any]:
        """Upscale (and, with the extras extension, face-restore) one image."""
        if not request.image.strip():
            raise UserInputError("image", "no image given (base64 or data URL)")
        html_info, images = await run_extras(request)
        return {"html_info": html_info, "image": images[0] if images else ""}

    @router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
    async def extra_batch_images(request: ExtrasBatchImagesRequest) -> dict[str, Any]:
        """The same for a list of images (``imageList: [{data, name}]``)."""
        if not request.imageList:
            raise UserInputError("imageList", "no images given")
        html_info, images = await run_extras(request)
        return {"html_info": html_info, "images": images}

    @router.post("/png-info", response_model=PNGInfoResponse)
    async def png_info(request: PNGInfoRequest) -> dict[str, Any]:
        """Generation parameters stored in an image (PNG text, EXIF UserComment, NovelAI)."""
        if not request.image.strip():
            return {"info": "", "items": {}, "parameters": {}}
        return await services.cpu_work.run(_png_info, request.image, services.callbacks)

    return router


def _check_extras_inputs(request: ExtrasSingleImageRequest | ExtrasBatchImagesRequest, limits: Any) -> None:
    """Before queueing: each image's declared size against ``--max-image-pixels`` and its upscaled size against
    ``--max-output-pixels`` (headers only; the job decodes the pixels)."""
    from modules.processing.extras import ExtrasBatchImagesParams, check_extras_limits
    from modules.processing.image_codec import open_base64_image

    if isinstance(request, ExtrasBatchImagesParams):
        sources = [(f"imageList[{index}].data", item.data) for index, item in enumerate(request.imageList)]
    else:
        sources = [("image", request.image)]
    sizes = [(field, open_base64_image(data, field, limits.max_image_pixels).size) for field, data in sources]
    check_extras_limits(request, sizes, limits)


def _png_info(data: str, callbacks: Any = None) -> dict[str, Any]:
    """The stored infotext and its parameters, after A1111's ``infotext_pasted`` callbacks (which may change
    them) have run."""
    from modules.processing.image_codec import open_base64_image
    from modules.processing.image_metadata import read_infotext
    from modules.processing.infotext import parse_infotext

    # Only the header and the chunks before the pixel data are read (A1111 writes its text chunks there):
    # the pixels of an image of any size are never decoded here.
    image = open_base64_image(data, "image", max_pixels=None)
    text, items = read_infotext(image)
    items = {key: value if isinstance(value, str | int | float | bool) or value is None else str(value)
             for key, value in items.items()}
    if text is None:
        return {"info": "", "items": items, "parameters": {}}
    parameters = parse_infotext(text)
    if callbacks is not None:
        callbacks.call("infotext_pasted", text, parameters)
    return {"info": text, "items": {"parameters": text, **items}, "parameters": parameters}
