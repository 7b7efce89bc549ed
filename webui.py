"""Easel's composition root: settings -> services -> FastAPI app (+ Gradio UI) -> uvicorn.

Start-up is split so the server answers within about a second: the light services (settings, job store and
queue, sampler registry, checkpoint catalog, image store) are built on the main thread without importing torch,
diffusers or gradio; a warm-up thread then imports those, picks the device, builds the model manager and the
generation service, loads the default model and mounts the UI. Jobs submitted before the warm-up finishes wait
in the queue; nothing on a request path imports heavy modules.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.core.errors import EaselError
from modules.core.settings import Settings
from modules.jobs import JobQueue, JobStore
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.processing.image_store import ImageStore
from modules.processing.samplers import SamplerRegistry, build_default_registry

log = logging.getLogger("easel")

JobRunner = Callable[[Any, Any], dict[str, Any] | None]


@dataclass
class Services:
    """Everything the API routers, the UI and scripts use; built once by :func:`build_services`."""

    settings: Settings
    job_store: JobStore
    queue: JobQueue
    samplers: SamplerRegistry
    catalog: CheckpointCatalog
    image_store: ImageStore
    runners: dict[str, JobRunner] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    started_at: float = field(default_factory=time.time)
    startup_error: str | None = None
    # Built by the warm-up thread:
    device: Any = None  # modules.devices.Device
    manager: Any = None  # modules.models.manager.ModelManager
    generation: Any = None  # modules.processing.service.GenerationService
    extensions: dict[str, Any] = field(default_factory=dict)  # extension-provided services by name
    ui_mounted: bool = False
    script_dirs: list[Path] | None = None  # built-in scripts folders (default: <repo>/scripts)
    extension_roots: list[Path] | None = None  # extension folders (default: <repo>/extensions)
    warmup_hooks: list[Callable[[Services], None]] = field(default_factory=list)

    def run_job(self, job: Any, ctx: Any) -> dict[str, Any] | None:
        """The queue's runner: waits for the warm-up, then dispatches by job kind."""
        self.ready.wait()
        if self.startup_error:
            raise EaselError(f"Easel could not start its processing core: {self.startup_error}")
        runner = self.runners.get(job.kind)
        if runner is None:
            raise EaselError(f"no runner for job kind {job.kind!r}; known: {', '.join(sorted(self.runners))}")
        return runner(job, ctx)

    def register_runner(self, kind: str, runner: JobRunner) -> None:
        if kind in self.runners:
            raise ValueError(f"a runner for job kind {kind!r} is already registered")
        self.runners[kind] = runner


def build_services(settings: Settings) -> Services:
    """The light services; cheap enough for the main thread (no torch/diffusers/gradio imports)."""
    settings.data_paths.ensure()
    hash_cache = HashCache(settings.data_paths.hash_cache)
    catalog = CheckpointCatalog(settings.model_paths.stable_diffusion, hash_cache)
    catalog.refresh()
    image_store = ImageStore(settings.data_paths.outputs, lambda: settings.options)
    holder: dict[str, Services] = {}
    job_store = JobStore(settings.data_paths.queue_db, retention_count=settings.options.job_retention_count,
                         on_prune=lambda job: holder["services"].generation and
                         holder["services"].generation.delete_result(job))
    queue = JobQueue(job_store, lambda job, ctx: holder["services"].run_job(job, ctx))
    services = Services(settings=settings, job_store=job_store, queue=queue, samplers=build_default_registry(),
                        catalog=catalog, image_store=image_store)
    holder["services"] = services
    return services


def warm_up(services: Services, *, load_model: bool = True) -> None:
    """Heavy start-up work, off the request path: device, model manager, generation service, default model."""
    try:
        from modules.core.lazy_imports import hide_from_library_probes

        hide_from_library_probes()  # before diffusers' model classes load: see the module docstring
        from modules import controlnet, faces, upscalers
        from modules.backends.setup import install as install_execution
        from modules.devices import select_device
        from modules.extensions.setup import install as install_extensions
        from modules.models.manager import ModelManager
        from modules.processing.service import GenerationService

        flags = services.settings.flags
        services.device = select_device(use_cpu=flags.use_cpu, device_id=flags.device_id, precision=flags.precision,
                                        no_half=flags.no_half, no_half_vae=flags.no_half_vae)
        services.manager = ModelManager(services.catalog, services.device, allow_pickle=flags.allow_pickle,
                                        cache_size=lambda: services.settings.options.sd_checkpoint_cache)
        services.generation = GenerationService(
            settings=services.settings, manager=services.manager, samplers=services.samplers,
            image_store=services.image_store, results_root=services.settings.data_paths.job_results)
        services.register_runner("txt2img", services.generation.run_job)
        services.register_runner("img2img", services.generation.run_job)
        install_execution(services)
        upscalers.install(services)
        faces.install(services)
        controlnet.install(services)
        install_extensions(services, builtin_dirs=services.script_dirs, extension_roots=services.extension_roots)
        for hook in services.warmup_hooks:
            hook(services)
        log.info("device: %s", services.device.describe())
    except Exception as exc:  # the server keeps answering and reports the failure in every job
        services.startup_error = f"{exc.__class__.__name__}: {exc}"
        log.exception("warm-up failed")
        services.ready.set()
        return
    services.ready.set()
    if load_model:
        try:
            services.manager.ensure_loaded(services.settings.options.sd_model_checkpoint)
        except EaselError as exc:
            log.warning("%s", exc.message)
        except Exception:
            log.exception("loading the default model failed")


def create_app(services: Services) -> Any:
    from modules.api.app import create_app as create_api_app

    return create_api_app(services)


def start_background(services: Services, app: Any, *, with_ui: bool) -> threading.Thread:
    def work() -> None:
        warm_up(services)
        if with_ui:
            try:
                from modules.ui.mount import mount_ui

                mount_ui(app, services)
                services.ui_mounted = True
            except Exception:
                log.exception("the browser UI could not be built; the API keeps running")

    thread = threading.Thread(target=work, name="easel-warmup", daemon=True)
    thread.start()
    return thread


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    import os

    import uvicorn

    configure_logging()
    arguments = list(sys.argv[1:] if argv is None else argv)
    settings = Settings.load(arguments, os.environ)
    for warning in settings.load_warnings:
        log.warning(warning)
    services = build_services(settings)
    app = create_app(services)
    services.queue.start()
    start_background(services, app, with_ui=not settings.flags.nowebui)
    flags = settings.flags
    log.info("Easel serving on http://%s:%d (%s)", flags.host, flags.effective_port,
             "API only" if flags.nowebui else "UI at /, API at /sdapi/v1")
    config = uvicorn.Config(app, host=flags.host, port=flags.effective_port, log_level="warning",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    services.extensions["server"] = server
    try:
        server.run()
    finally:
        services.queue.stop()
        services.job_store.close()
    if services.extensions.get("restart_requested"):
        command = restart_command()
        log.warning("restarting: %s", " ".join(command))
        logging.shutdown()
        os.execv(command[0], command)  # same PID; the port and the queue's file lock were released above
    return 0


def restart_command() -> list[str]:
    """The command line this process was started with (``python launch.py ...`` or ``python webui.py ...``), so
    that ``/sdapi/v1/server-restart`` starts Easel again the way the user started it."""
    return [sys.executable, *sys.orig_argv[1:]]


if __name__ == "__main__":
    raise SystemExit(main())
