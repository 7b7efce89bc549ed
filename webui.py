"""Easel's composition root: settings -> services -> FastAPI app (+ Gradio UI) -> uvicorn.

Start-up is split so the server answers within about a second: the light services (settings, job store and
queue, sampler registry, checkpoint catalog, image store) are built on the main thread without importing torch,
diffusers or gradio; a warm-up thread then imports those, picks the device, builds the model manager and the
generation service, loads the default model and mounts the UI. Jobs submitted before the warm-up finishes wait
in the queue; nothing on a request path imports heavy modules.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from modules.core.cpu_work import CpuWork
from modules.core.errors import EaselError
from modules.core.settings import Settings
from modules.jobs import Job, JobQueue, JobStore
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.processing.image_store import ImageStore
from modules.processing.samplers import build_default_registry
from modules.services import JobRunner, Lifecycle, Services

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("easel")

__all__ = ["JobRunner", "Lifecycle", "Services", "build_services", "create_app", "main", "warm_up"]


def build_services(settings: Settings) -> Services:
    """The light services; cheap enough for the main thread (no torch/diffusers/gradio imports)."""
    settings.data_paths.ensure()
    hash_cache = HashCache(settings.data_paths.hash_cache)
    catalog = CheckpointCatalog(settings.model_paths.stable_diffusion, hash_cache)
    catalog.refresh()
    image_store = ImageStore(settings.data_paths.outputs, lambda: settings.options)
    holder: dict[str, Services] = {}

    def delete_result(job: Job) -> None:
        generation = holder["services"].generation
        if generation is not None:
            generation.delete_result(job)

    job_store = JobStore(settings.data_paths.queue_db, retention_count=settings.options.job_retention_count,
                         on_prune=delete_result)
    queue = JobQueue(job_store, lambda job, ctx: holder["services"].run_job(job, ctx),
                     model_of=lambda job: job_model(holder["services"], job),
                     fairness_seconds=lambda: settings.options.worker_fairness_seconds)
    services = Services(settings=settings, job_store=job_store, queue=queue, samplers=build_default_registry(),
                        catalog=catalog, image_store=image_store,
                        cpu_work=CpuWork(settings.limits.cpu_workers))
    holder["services"] = services
    settings.option_listeners.append(lambda old, new: _apply_retention(job_store, settings.options.job_retention_count))
    return services


def _apply_retention(store: JobStore, count: int) -> None:
    """A new ``job_retention_count`` applies at once: finished jobs beyond it are pruned now, not after the next job."""
    if store.retention_count != count:
        store.retention_count = count
        store.prune()


def job_model(services: Services, job: Job) -> str | None:
    """The checkpoint a job will use (its override, else the current option) as the catalog titles it: what
    model affinity compares with the models a worker has loaded (the in-process worker reports none)."""
    overrides = job.payload.get("override_settings")
    wanted = overrides.get("sd_model_checkpoint") if isinstance(overrides, dict) else None
    name = wanted if isinstance(wanted, str) and wanted else services.settings.options.sd_model_checkpoint
    if not name:
        return None
    entry = services.catalog.find(name)
    return entry.title if entry is not None else name


def warm_up(services: Services, *, load_model: bool = True, script_defaults: bool = True) -> None:
    """Heavy start-up work, off the request path: device, model manager, generation service, default model.

    ``script_defaults=False`` leaves the scripts' argument layout to be read after the browser page is built
    (``start_background``), where the scripts have seen the page's components, as in A1111."""
    try:
        from modules.core.lazy_imports import HIDDEN_FROM_PROBES, hide_from_library_probes
        from modules.quantization.methods import probe_packages

        # before diffusers' model classes load (see the module docstring); what the quantization option needs
        # stays visible, since diffusers' quantizer for it reads that probe
        needed = probe_packages(services.settings.options.quantization)
        hide_from_library_probes(tuple(name for name in HIDDEN_FROM_PROBES if name not in needed))
        wire_processing_core(services, script_defaults=script_defaults)
    except Exception as exc:  # the server keeps answering and reports the failure in every job
        services.startup_error = f"{exc.__class__.__name__}: {exc}"
        log.exception("warm-up failed")
        services.ready.set()
        return
    services.ready.set()
    if load_model and services.manager is not None:
        try:
            services.manager.ensure_loaded(services.settings.options.sd_model_checkpoint)
        except EaselError as exc:
            log.warning("%s", exc.message)
        except Exception:
            log.exception("loading the default model failed")


def wire_processing_core(services: Services, *, script_defaults: bool = True) -> None:
    """Build the heavy services and plug them into each other. The order below is the one place it is written:
    each step uses only what the steps above it built."""
    from modules.api.runners import register_api_runners
    from modules.backends.setup import ExecutionSetup
    from modules.controlnet.service import ControlNetService
    from modules.devices import select_device
    from modules.extensions import compat
    from modules.extensions.setup import build_extension_services
    from modules.faces.service import FaceRestorerService
    from modules.models.manager import LoadedModel, ModelManager
    from modules.processing.extras import ExtrasService
    from modules.processing.service import GenerationService
    from modules.upscalers.service import UpscalerService, esrgan_tile_settings

    settings, flags = services.settings, services.settings.flags
    # 1. the device and the model manager
    device = select_device(use_cpu=flags.use_cpu, device_id=flags.device_id, precision=flags.precision,
                           no_half=flags.no_half, no_half_vae=flags.no_half_vae)
    services.device = device
    manager = ModelManager(services.catalog, device, allow_pickle=flags.allow_pickle,
                           cache_size=lambda: settings.options.sd_checkpoint_cache)
    services.manager = manager
    # 2. generation: txt2img and img2img jobs
    generation = GenerationService(settings=settings, manager=manager, samplers=services.samplers,
                                   image_store=services.image_store, results_root=settings.data_paths.job_results)
    processor = generation.processor
    services.generation = generation
    services.register_runner("txt2img", generation.run_job)
    services.register_runner("img2img", generation.run_job)
    # 3. execution backends, memory strategies and quantization on every model the manager loads
    execution = ExecutionSetup(settings, device)
    manager.on_model_loading(execution.load_components)
    manager.on_model_loaded(execution.on_model_loaded)
    processor.prompt_preprocessors.append(execution.infotext_preprocessor)
    generation.status_texts.append(lambda: execution.status_text(manager.current))
    # 4. upscalers (hires fix, extras) and face restoration (generation, extras)
    upscalers = UpscalerService(settings.model_paths.esrgan, device=device.device, allow_pickle=flags.allow_pickle,
                                tile_settings=lambda: esrgan_tile_settings(settings.options))
    processor.upscalers = upscalers
    services.upscalers = upscalers
    faces = FaceRestorerService(settings.model_paths, device=device.device, allow_pickle=flags.allow_pickle)
    faces.warn_if_unusable()
    processor.face_restoration = faces.restore_run_images
    services.faces = faces
    extras = ExtrasService(settings=settings, upscalers=upscalers, image_store=services.image_store,
                           face_restorers=faces)
    services.extras = extras
    extras.postprocessing = lambda: getattr(services.scripts, "postprocessing", None)
    services.register_runner("extras", extras.run_job)
    # 5. ControlNet: units from alwayson_scripts, IP-Adapter patches undone when a run ends
    controlnet = ControlNetService(settings.model_paths.controlnet, limits=settings.limits)
    generation.customizers.append(controlnet.customize)
    processor.finalizers.append(controlnet.finalize)
    services.controlnet = controlnet
    # 6. the A1111 façade, prompt features (styles, wildcards, LoRA, embeddings), scripts and extensions
    binding = compat.bind(services)
    from modules.extensions.setup import prepare_runtime

    prepare_runtime(services, binding, services.extension_roots)
    extensions = build_extension_services(settings, lambda: manager.current, binding.callbacks,
                                          builtin_dirs=services.script_dirs, extension_roots=services.extension_roots,
                                          build_ui_defaults=script_defaults)
    processor.prompt_preprocessors.append(extensions.prompt_features.preprocess)
    processor.finalizers.append(extensions.prompt_features.finalize)
    generation.customizers.append(extensions.scripts.customize)
    generation.executors.append(extensions.scripts.execute)
    def model_loaded(model: LoadedModel) -> None:
        binding.callbacks.call("model_loaded", model.pipe)

    manager.on_model_loaded(model_loaded)
    services.callbacks = binding.callbacks
    services.styles, services.networks, services.scripts = extensions.styles, extensions.networks, extensions.scripts
    # 7. the API's own runners (model load/unload/reload, the extras fallback)
    register_api_runners(services)
    log.info("device: %s", device.describe())


def create_app(services: Services) -> FastAPI:
    """The FastAPI app; with the browser UI on, ``/`` shows a self-reloading page until the UI is mounted."""
    from modules.api.app import create_app as create_api_app

    app = create_api_app(services)
    if not services.settings.flags.nowebui:
        from modules.ui.loading import add_loading_page

        add_loading_page(app)
    return app


def start_background(services: Services, app: FastAPI, *, with_ui: bool) -> threading.Thread:
    def work() -> None:
        # workers load their own model; with the page, the scripts' argument layout is read after it is built
        warm_up(services, load_model=not services.settings.flags.uses_cluster, script_defaults=not with_ui)
        if with_ui:
            try:
                from modules.ui.mount import mount_ui

                mount_ui(app, services)
                services.ui_mounted = True
            except Exception:
                log.exception("the browser UI could not be built; the API keeps running")
            if services.scripts is not None:
                try:
                    services.scripts.setup_ui()
                except Exception:
                    log.exception("script argument defaults could not be read from their ui()")
        if services.startup_error is None:
            from modules.extensions.setup import app_started

            app_started(services, app)

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
    settings = Settings.load(arguments, os.environ, extend_parser=extension_flags(arguments))
    for warning in settings.load_warnings:
        log.warning(warning)
    services = build_services(settings)
    app = create_app(services)
    if settings.flags.uses_cluster:
        from webui_worker import start_cluster_workers

        start_cluster_workers(services)
    services.queue.start()
    start_background(services, app, with_ui=not settings.flags.nowebui)
    flags = settings.flags
    log.info("Easel serving on http://%s:%d (%s)", flags.host, flags.effective_port,
             "API only" if flags.nowebui else "UI at /, API at /sdapi/v1")
    config = uvicorn.Config(app, host=flags.host, port=flags.effective_port, log_level="warning",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    services.lifecycle.server = server
    try:
        server.run()
    finally:
        from modules.extensions.setup import stop as stop_extensions

        stop_extensions(services, restarting=services.lifecycle.restart_requested)
        services.queue.stop()
        services.queue.close_workers()
        services.job_store.close()
    if services.lifecycle.restart_requested:
        command = restart_command()
        log.warning("restarting: %s", " ".join(command))
        logging.shutdown()
        os.execv(command[0], command)  # same PID; the port and the queue's file lock were released above
    return 0


def extension_flags(arguments: Sequence[str]) -> Callable[[argparse.ArgumentParser], None]:
    """Adds the flags extensions declare in their ``preload.py`` to the command-line parser."""

    def extend(parser: argparse.ArgumentParser) -> None:
        from modules.core.paths import REPO_ROOT
        from modules.extensions.preload import preload_extensions

        preload_extensions(parser, arguments, [REPO_ROOT / "extensions"])

    return extend


def restart_command() -> list[str]:
    """The command line this process was started with (``python launch.py ...`` or ``python webui.py ...``), so
    that ``/sdapi/v1/server-restart`` starts Easel again the way the user started it."""
    return [sys.executable, *sys.orig_argv[1:]]


if __name__ == "__main__":
    raise SystemExit(main())
