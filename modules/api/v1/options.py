"""``/sdapi/v1/options``, ``/sdapi/v1/cmd-flags`` and the checkpoint/VAE routes (lists, refresh, unload,
reload, memory). A new ``sd_model_checkpoint`` and the unload/reload calls are jobs on the queue."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

from fastapi import APIRouter, Body, Response

from modules.api.runners import LOAD_MODEL, RELOAD_MODEL, UNLOAD_MODEL
from modules.api.schemas import SDModelItem, SDVaeItem
from modules.api.v1.common import run_model_job
from modules.models.vae import list_vaes, resolve_vae
from modules.services import Services

log = logging.getLogger(__name__)

SECRET_FLAGS = ("auth", "api_auth")


def build_router(services: Services) -> APIRouter:
    router = APIRouter()
    settings = services.settings
    queue = services.queue

    @router.get("/options")
    async def get_options() -> dict[str, Any]:
        """Every option (all of A1111 v1.10's keys, Easel's own, and keys clients wrote); ``sd_model_checkpoint``
        and ``sd_checkpoint_hash`` name the model actually loaded, as A1111's do."""
        options = settings.options.model_dump(mode="json")
        current = services.manager.current if services.manager is not None else None
        if current is not None:
            options["sd_model_checkpoint"] = current.info.title
            options["sd_checkpoint_hash"] = current.info.sha256 or options.get("sd_checkpoint_hash", "")
        return options

    @router.post("/options")
    async def set_options(response: Response, changes: dict[str, Any] = Body(...)) -> None:
        """Validate and save options atomically. A new ``sd_model_checkpoint`` is loaded through the queue and, as
        in A1111, the call returns once it is loaded (or fails with the load's error), so the next ``GET`` and the
        next job see it. As in A1111, options an extension registered with ``restrict_api=True`` are never
        changed through the API: they are left out without an error (the request's other keys are stored), and
        the ``X-Easel-Ignored-Options`` header names them."""
        ignored = _api_ignored(changes, settings.options.model_dump())
        if ignored:
            log.warning("POST /sdapi/v1/options: %s cannot be changed through the API; left unchanged",
                        ", ".join(ignored))
            response.headers["X-Easel-Ignored-Options"] = ",".join(ignored)
            changes = {key: value for key, value in changes.items() if key not in ignored}
        checkpoint = changes.get("sd_model_checkpoint")
        if checkpoint:
            await asyncio.to_thread(services.catalog.check, str(checkpoint), "sd_model_checkpoint",
                                    allow_pickle=settings.flags.allow_pickle)
        vae = changes.get("sd_vae")
        if isinstance(vae, str):
            known = await asyncio.to_thread(list_vaes, settings.model_paths.vae, services.catalog.folder)
            resolve_vae(vae, None, known)  # an unknown name is a 422 naming sd_vae
        await asyncio.to_thread(settings.update_options, changes)
        if checkpoint and not _is_loaded(services, str(checkpoint)):
            await run_model_job(queue, LOAD_MODEL, {"checkpoint": str(checkpoint)})
        return None

    @router.get("/cmd-flags")
    async def cmd_flags() -> dict[str, Any]:
        """Launch flags (credentials redacted)."""
        flags = settings.flags.model_dump(mode="json")
        for key in SECRET_FLAGS:
            if flags.get(key):
                flags[key] = "***"
        return flags

    @router.get("/sd-models", response_model=list[SDModelItem])
    async def sd_models() -> list[dict[str, Any]]:
        return [{"title": entry.title, "model_name": entry.model_name, "hash": entry.shorthash,
                 "sha256": entry.sha256, "filename": str(entry.path), "config": None, "family": entry.family,
                 "format": entry.format, "size": entry.size_bytes} for entry in services.catalog.entries]

    @router.get("/sd-vae", response_model=list[SDVaeItem])
    def sd_vae() -> list[dict[str, Any]]:
        return [{"model_name": vae.name, "filename": str(vae.path)}
                for vae in list_vaes(settings.model_paths.vae, services.catalog.folder)]

    @router.post("/refresh-checkpoints")
    async def refresh_checkpoints() -> dict[str, Any]:
        await asyncio.to_thread(services.catalog.refresh)
        return {}

    @router.post("/refresh-vae")
    async def refresh_vae() -> dict[str, Any]:
        """The VAE list is read from disk on every ``sd-vae`` call; nothing is cached to refresh."""
        return {}

    @router.get("/memory")
    async def memory() -> dict[str, Any]:
        """System RAM, and CUDA statistics when a CUDA device is in use (``cuda.error`` otherwise)."""
        return await asyncio.to_thread(_memory_stats)

    @router.post("/unload-checkpoint")
    async def unload_checkpoint() -> dict[str, Any]:
        """Drop the loaded model (queued: never while a job uses it)."""
        return await run_model_job(queue, UNLOAD_MODEL)

    @router.post("/reload-checkpoint")
    async def reload_checkpoint() -> dict[str, Any]:
        """Load the selected checkpoint again after an unload (queued)."""
        return await run_model_job(queue, RELOAD_MODEL)

    return router


def _api_ignored(changes: dict[str, Any], current: dict[str, Any]) -> list[str]:
    from modules.extensions import compat

    try:
        registry = compat.options()
    except RuntimeError:  # the extension layer is not bound: no extension registered an option
        return []
    ignored: list[str] = registry.api_ignored(changes, current)
    return ignored


def _is_loaded(services: Services, checkpoint: str) -> bool:
    manager = services.manager
    current = manager.current if manager is not None else None
    if current is None:
        return False
    wanted = services.catalog.find(checkpoint)
    return wanted is not None and wanted.path == current.info.path


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
