"""``/sdapi/v1``: AUTOMATIC1111's REST API (v1.10.1 shapes, ``webui-contract.md`` §2.1) over Easel's job queue.

Generation and extras calls submit a job and await it (``JobQueue.wait_async``: no thread is held while
waiting), so v1 clients, v2 clients and the UI share one FIFO and one worker; model switches, unloads and
reloads are jobs too. Everything else (progress, options, lists) answers from memory at once, also while a job
runs, which A1111 cannot do (its ``options`` waits behind generation).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.concurrency import run_in_threadpool

from modules.api import generation
from modules.api.runners import (
    BUILTIN_UPSCALERS,
    EXTRAS_BUILTIN,
    LOAD_MODEL,
    RELOAD_MODEL,
    UNLOAD_MODEL,
    extras_kind,
)
from modules.api.schemas import (
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
    FaceRestorerItem,
    ImageToImageResponse,
    LatentUpscalerModeItem,
    PNGInfoRequest,
    PNGInfoResponse,
    ProgressResponse,
    ProgressState,
    PromptStyleItem,
    SamplerItem,
    SchedulerItem,
    ScriptsList,
    SDModelItem,
    SDVaeItem,
    TextToImageResponse,
    UpscalerItem,
)
from modules.core.errors import PermissionDeniedError, UserInputError
from modules.processing.params import GenerationParams, Img2ImgParams, Txt2ImgParams

log = logging.getLogger(__name__)

SOURCE = "api-v1"
LATENT_UPSCALE_MODES = ("Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
                        "Latent (nearest)", "Latent (nearest-exact)")
VAE_SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")
SECRET_FLAGS = ("auth", "api_auth")
MODEL_JOB_TIMEOUT = 600.0


class PreviewCache:
    """The last encoded live preview, so that clients polling ``progress`` several times a second do not make
    the server re-encode the same picture on every poll.

    A small preview (the usual case: a latent-sized sketch) is encoded inline, which costs less than a hop to
    another thread; a large one runs on a thread of its own, not the default pool: that pool also runs SQLite
    calls that can wait for the queue's lock, and ``progress`` must never queue behind them.
    """

    INLINE_PIXELS = 256 * 256

    def __init__(self) -> None:
        self._key: tuple[str | None, int] | None = None
        self._data: str | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="easel-preview")

    async def encode(self, snapshot: Any) -> str | None:
        if snapshot.preview is None:
            return None
        key = (snapshot.job_id, snapshot.preview_id)
        if key != self._key:
            size = getattr(snapshot.preview, "size", (0, 0))
            if size[0] * size[1] <= self.INLINE_PIXELS:
                data = encode_preview(snapshot.preview)
            else:
                loop = asyncio.get_running_loop()
                data = await loop.run_in_executor(self._executor, encode_preview, snapshot.preview)
            self._key, self._data = key, data
        return self._data


def encode_preview(image: Any) -> str:
    """A live preview (PIL image) as bare base64 PNG, without metadata."""
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def build_router(services: Any) -> APIRouter:
    router = APIRouter(prefix="/sdapi/v1", tags=["sdapi v1 (A1111)"])
    previews = PreviewCache()
    settings = services.settings
    queue = services.queue

    def extension(name: str) -> Any:
        return services.extensions.get(name)

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

    async def run_model_job(kind: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        job = await asyncio.to_thread(queue.submit, kind, payload or {}, source=SOURCE)
        final = await queue.wait_async(job.id, timeout=MODEL_JOB_TIMEOUT)
        generation.raise_for_job(final)
        return {}

    # -- generation ---------------------------------------------------------------------------------------

    @router.post("/txt2img", response_model=TextToImageResponse)
    async def txt2img(params: Txt2ImgParams) -> dict[str, Any]:
        """Text to image. Fields and defaults are A1111's; null means the default."""
        return await generate("txt2img", params)

    @router.post("/img2img", response_model=ImageToImageResponse)
    async def img2img(params: Img2ImgParams) -> dict[str, Any]:
        """Image to image and inpainting (``init_images``, ``mask``)."""
        return await generate("img2img", params)

    async def run_extras(request: ExtrasSingleImageRequest | ExtrasBatchImagesRequest) -> tuple[str, list[str]]:
        await generation.wait_ready(services)
        kind = extras_kind(services)
        if kind == EXTRAS_BUILTIN:
            for field in ("upscaler_1", "upscaler_2"):
                name = getattr(request, field)
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
        return await services.cpu_work.run(_png_info, request.image)

    # -- progress and control -----------------------------------------------------------------------------

    @router.get("/progress", response_model=ProgressResponse)
    async def progress(skip_current_image: bool = Query(False)) -> dict[str, Any]:
        """Progress of the running job, from a lock-free snapshot (answers in microseconds)."""
        snap = queue.progress()
        state = ProgressState(
            skipped=snap.skipped, interrupted=snap.interrupted,
            stopping_generation=snap.interrupted or snap.cancelling,
            job=(snap.kind or "") if snap.active else "",
            job_count=snap.batch_count if snap.active else 0,
            job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(snap.started_at)) if snap.started_at else "0",
            job_no=snap.batch_no, sampling_step=snap.step, sampling_steps=snap.total_steps)
        current_image = None if skip_current_image or not snap.active else await previews.encode(snap)
        return {"progress": snap.progress if snap.active else 0.0, "eta_relative": snap.eta_seconds or 0.0,
                "state": state, "current_image": current_image, "textinfo": snap.textinfo}

    @router.post("/interrupt")
    async def interrupt() -> dict[str, Any]:
        """Stop the running job, keeping the images it finished (A1111 semantics)."""
        await asyncio.to_thread(queue.interrupt)
        return {}

    @router.post("/skip")
    async def skip() -> dict[str, Any]:
        """Abandon the current image of the running batch and go on with the next."""
        await asyncio.to_thread(queue.skip)
        return {}

    # -- options and flags --------------------------------------------------------------------------------

    @router.get("/options")
    async def get_options() -> dict[str, Any]:
        """Every option, including keys only other web UIs know (kept as clients wrote them)."""
        return settings.options.model_dump(mode="json")

    @router.post("/options")
    async def set_options(changes: dict[str, Any] = Body(...)) -> None:
        """Validate and save options atomically; a new ``sd_model_checkpoint`` is loaded through the queue."""
        checkpoint = changes.get("sd_model_checkpoint")
        if checkpoint:
            await asyncio.to_thread(generation.check_checkpoint, services, str(checkpoint), "sd_model_checkpoint")
        await asyncio.to_thread(settings.update_options, changes)
        if checkpoint and not _is_loaded(services, str(checkpoint)):
            await asyncio.to_thread(queue.submit, LOAD_MODEL, {"checkpoint": str(checkpoint)}, source=SOURCE)
        return None

    @router.get("/cmd-flags")
    async def cmd_flags() -> dict[str, Any]:
        """Launch flags (credentials redacted)."""
        flags = settings.flags.model_dump(mode="json")
        for key in SECRET_FLAGS:
            if flags.get(key):
                flags[key] = "***"
        return flags

    # -- lists --------------------------------------------------------------------------------------------

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
        """The upscaler service's list (``services.extensions["upscalers"].list()``), else the built-in three."""
        provider = extension("upscalers")
        if provider is not None and hasattr(provider, "list"):
            return list(provider.list())
        return [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": None}
                for name in BUILTIN_UPSCALERS]

    @router.get("/latent-upscale-modes", response_model=list[LatentUpscalerModeItem])
    async def latent_upscale_modes() -> list[dict[str, Any]]:
        provider = extension("upscalers")
        if provider is not None and hasattr(provider, "latent_modes"):
            return list(provider.latent_modes())
        return [{"name": name} for name in LATENT_UPSCALE_MODES]

    @router.get("/sd-models", response_model=list[SDModelItem])
    async def sd_models() -> list[dict[str, Any]]:
        return [{"title": entry.title, "model_name": entry.model_name, "hash": entry.shorthash,
                 "sha256": entry.sha256, "filename": str(entry.path), "config": None, "family": entry.family,
                 "format": entry.format, "size": entry.size_bytes} for entry in services.catalog.entries]

    @router.get("/sd-vae", response_model=list[SDVaeItem])
    def sd_vae() -> list[dict[str, Any]]:
        return _vae_files(settings.model_paths.vae)

    @router.get("/hypernetworks")
    async def hypernetworks() -> list[dict[str, Any]]:
        """Easel does not load hypernetworks; the list is always empty."""
        return []

    @router.get("/face-restorers", response_model=list[FaceRestorerItem])
    async def face_restorers() -> list[dict[str, Any]]:
        """The installed face restorers (``services.extensions["faces"].list()``); none on a bare install, where
        A1111 would list models it downloads on first use."""
        provider = extension("faces")
        return list(provider.list()) if provider is not None and hasattr(provider, "list") else []

    @router.get("/realesrgan-models")
    async def realesrgan_models() -> list[dict[str, Any]]:
        """The RealESRGAN models among the upscalers, in A1111's ``{name, path, scale}`` shape."""
        provider = extension("upscalers")
        if provider is None or not hasattr(provider, "list"):
            return []
        return [{"name": item["name"], "path": item.get("model_path"), "scale": item.get("scale")}
                for item in provider.list() if "realesrgan" in str(item["name"]).lower().replace("-", "")]

    @router.get("/prompt-styles", response_model=list[PromptStyleItem])
    async def prompt_styles() -> list[dict[str, Any]]:
        provider = extension("styles")
        return list(provider.styles()) if provider is not None else []

    @router.get("/embeddings")
    async def embeddings() -> dict[str, Any]:
        provider = extension("networks")
        return dict(provider.embeddings()) if provider is not None else {"loaded": {}, "skipped": {}}

    @router.post("/refresh-embeddings")
    async def refresh_embeddings() -> dict[str, Any]:
        provider = extension("networks")
        if provider is not None:
            await run_in_threadpool(provider.refresh_embeddings)
        return {}

    @router.get("/loras")
    async def loras() -> list[dict[str, Any]]:
        provider = extension("networks")
        return list(provider.loras()) if provider is not None else []

    @router.post("/refresh-loras")
    async def refresh_loras() -> dict[str, Any]:
        provider = extension("networks")
        if provider is not None:
            await run_in_threadpool(provider.refresh_loras)
        return {}

    @router.post("/refresh-checkpoints")
    async def refresh_checkpoints() -> dict[str, Any]:
        await asyncio.to_thread(services.catalog.refresh)
        return {}

    @router.post("/refresh-vae")
    async def refresh_vae() -> dict[str, Any]:
        """The VAE list is read from disk on every ``sd-vae`` call; nothing is cached to refresh."""
        return {}

    @router.get("/scripts", response_model=ScriptsList)
    async def scripts() -> dict[str, Any]:
        provider = extension("scripts")
        if provider is None:
            return {"txt2img": [], "img2img": []}
        return {"txt2img": list(provider.titles(False)), "img2img": list(provider.titles(True))}

    @router.get("/script-info")
    async def script_info() -> list[dict[str, Any]]:
        provider = extension("scripts")
        return list(provider.script_info()) if provider is not None else []

    @router.get("/extensions")
    async def extensions() -> list[dict[str, Any]]:
        provider = extension("scripts")
        if provider is not None and hasattr(provider, "extensions_info"):
            return list(provider.extensions_info())
        return []

    # -- memory and models --------------------------------------------------------------------------------

    @router.get("/memory")
    async def memory() -> dict[str, Any]:
        """System RAM, and CUDA statistics when a CUDA device is in use (``cuda.error`` otherwise)."""
        return await asyncio.to_thread(_memory_stats)

    @router.post("/unload-checkpoint")
    async def unload_checkpoint() -> dict[str, Any]:
        """Drop the loaded model (queued: never while a job uses it)."""
        return await run_model_job(UNLOAD_MODEL)

    @router.post("/reload-checkpoint")
    async def reload_checkpoint() -> dict[str, Any]:
        """Load the selected checkpoint again after an unload (queued)."""
        return await run_model_job(RELOAD_MODEL)

    # -- server control -----------------------------------------------------------------------------------

    def server_control(action: str) -> dict[str, Any]:
        if not settings.flags.api_server_stop:
            raise PermissionDeniedError(f"/sdapi/v1/server-{action} is disabled; start Easel with --api-server-stop")
        server = extension("server")
        if action == "kill":
            log.warning("server-kill requested through the API")
            asyncio.get_running_loop().call_later(0.2, os._exit, 0)
            return {}
        if action == "restart":
            services.extensions["restart_requested"] = True
        log.warning("server-%s requested through the API", action)
        if server is not None:
            server.should_exit = True
        return {}

    @router.post("/server-stop")
    async def server_stop() -> dict[str, Any]:
        """Stop the server (only with ``--api-server-stop``)."""
        return server_control("stop")

    @router.post("/server-restart")
    async def server_restart() -> dict[str, Any]:
        """Stop the server asking the launcher to start it again (only with ``--api-server-stop``)."""
        return server_control("restart")

    @router.post("/server-kill")
    async def server_kill() -> dict[str, Any]:
        """End the process at once (only with ``--api-server-stop``)."""
        return server_control("kill")

    return router


def _is_loaded(services: Any, checkpoint: str) -> bool:
    manager = services.manager
    current = getattr(manager, "current", None) if manager is not None else None
    if current is None:
        return False
    wanted = services.catalog.find(checkpoint)
    return wanted is not None and wanted.path == current.info.path


def _png_info(data: str) -> dict[str, Any]:
    from modules.processing.image_store import open_base64_image, read_infotext
    from modules.processing.infotext import parse_infotext

    # Only the header and the chunks before the pixel data are read (A1111 writes its text chunks there):
    # the pixels of an image of any size are never decoded here.
    image = open_base64_image(data, "image", max_pixels=None)
    text, items = read_infotext(image)
    items = {key: value if isinstance(value, str | int | float | bool) or value is None else str(value)
             for key, value in items.items()}
    if text is None:
        return {"info": "", "items": items, "parameters": {}}
    return {"info": text, "items": {"parameters": text, **items}, "parameters": parse_infotext(text)}


def _check_extras_inputs(request: ExtrasSingleImageRequest | ExtrasBatchImagesRequest, limits: Any) -> None:
    """Before queueing: each image's declared size against ``--max-image-pixels`` and its upscaled size against
    ``--max-output-pixels`` (headers only; the job decodes the pixels)."""
    from modules.processing.extras import ExtrasBatchImagesParams, check_extras_limits
    from modules.processing.image_store import open_base64_image

    if isinstance(request, ExtrasBatchImagesParams):
        sources = [(f"imageList[{index}].data", item.data) for index, item in enumerate(request.imageList)]
    else:
        sources = [("image", request.image)]
    sizes = [(field, open_base64_image(data, field, limits.max_image_pixels).size) for field, data in sources]
    check_extras_limits(request, sizes, limits)


def _vae_files(folder: Any) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in VAE_SUFFIXES:
            found.append({"model_name": path.stem, "filename": str(path)})
        elif path.is_dir() and (path / "config.json").is_file():
            found.append({"model_name": path.name, "filename": str(path)})
    return found


def _memory_stats() -> dict[str, Any]:
    import psutil

    ram = psutil.virtual_memory()
    result: dict[str, Any] = {"ram": {"free": ram.available, "used": ram.total - ram.available, "total": ram.total}}
    if "torch" not in sys.modules:  # nothing has used a device yet: do not pay torch's import here
        result["cuda"] = {"error": "unavailable"}
        return result
    import torch

    if not torch.cuda.is_available():
        result["cuda"] = {"error": "unavailable"}
        return result
    try:
        free, total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()

        def pair(name: str) -> dict[str, int]:
            return {"current": int(stats.get(f"{name}.all.current", 0)), "peak": int(stats.get(f"{name}.all.peak", 0))}

        result["cuda"] = {
            "system": {"free": free, "used": total - free, "total": total},
            "active": pair("active_bytes"),
            "allocated": pair("allocated_bytes"),
            "reserved": pair("reserved_bytes"),
            "inactive": pair("inactive_split_bytes"),
            "events": {"retries": int(stats.get("num_alloc_retries", 0)), "oom": int(stats.get("num_ooms", 0))},
        }
    except Exception as exc:  # a broken driver must not turn a status call into a 500
        result["cuda"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result
