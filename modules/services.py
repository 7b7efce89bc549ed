"""The typed service container: what the composition root (``webui.py``) builds and hands to the API routers,
the UI and the A1111 compatibility façade.

The light services (settings, job store and queue, samplers, checkpoint catalog, image store) exist from the
start; the heavy ones (device, model manager, generation, scripts, upscalers, face restorers, ControlNet...) are
filled in once by the warm-up, in the order written in ``webui.warm_up``, and stay ``None`` until then. Each heavy
service is seen through a small protocol naming what its readers call, so this module imports no torch,
diffusers or gradio (the annotations name those types for the type checker only).
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from modules.core import cancellation
from modules.core.cpu_work import CpuWork
from modules.core.errors import EaselError
from modules.core.limits import DEFAULT_CPU_WORKERS, Limits
from modules.core.settings import Settings
from modules.jobs import Job, JobContext, JobQueue, JobStore
from modules.models.catalog import CheckpointCatalog
from modules.processing.image_store import ImageStore
from modules.processing.samplers import SamplerRegistry

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from modules.extensions.callbacks import CallbackRegistry
    from modules.extensions.discovery import Extension
    from modules.extensions.networks import NetworksService
    from modules.extensions.prompts import StylesService
    from modules.extensions.runner import ScriptRunner
    from modules.extensions.script_api import Script
    from modules.models.manager import LoadedModel
    from modules.processing.extras import ExtrasService
    from modules.processing.processor import Processor
    from modules.processing.run import ProcessingRun
    from modules.upscalers.service import Upscaler

JobResult = dict[str, object]
JobRunner = Callable[[Job, JobContext], "JobResult | None"]


class DeviceService(Protocol):
    """The device Easel computes on (``modules.devices.Device``)."""

    @property
    def device(self) -> torch.device: ...

    def describe(self) -> str: ...


class ModelManagerService(Protocol):
    """Loads, switches and unloads checkpoints (``modules.models.manager.ModelManager``)."""

    @property
    def current(self) -> LoadedModel | None: ...

    def ensure_loaded(self, query: str | None = None, *, park_current: bool = False) -> LoadedModel: ...

    def unload(self) -> None: ...

    def on_model_loaded(self, callback: Callable[[LoadedModel], None]) -> None: ...


class GenerationRunner(Protocol):
    """Runs txt2img/img2img jobs (``modules.processing.service.GenerationService``)."""

    @property
    def processor(self) -> Processor: ...

    def run_job(self, job: Job, ctx: JobContext) -> JobResult: ...

    def result_files(self, job_id: str, result: dict[str, object]) -> list[Path]: ...

    def delete_result(self, job: Job) -> None: ...


class ScriptsApi(Protocol):
    """Built-in scripts and extensions with A1111's Script API (``modules.extensions.ScriptsService``)."""

    def runner(self, is_img2img: bool) -> ScriptRunner: ...

    def setup_ui(self, gradio: object | None = None) -> None: ...

    def titles(self, is_img2img: bool) -> list[str]: ...

    def scripts(self, is_img2img: bool) -> list[Script]: ...

    def script_info(self) -> list[dict[str, object]]: ...

    def extensions_info(self) -> list[dict[str, object]]: ...

    def extension_status(self) -> list[dict[str, object]]: ...

    @property
    def extensions(self) -> Sequence[Extension]: ...

    def validate(self, params: object, *, limits: Limits | None = None, init_sizes: list[tuple[int, int]] | None = None
                 ) -> list[object]: ...


class UpscalersApi(Protocol):
    """Pixel upscalers by name (``modules.upscalers.UpscalerService``)."""

    def names(self) -> builtins.list[str]: ...

    def get(self, name: str, field: str = "upscaler") -> Upscaler: ...

    def upscale(self, image: Image.Image, scale: float, name: str, field: str = "upscaler") -> Image.Image: ...

    def list(self) -> Sequence[dict[str, object]]: ...

    def latent_modes(self) -> Sequence[dict[str, str]]: ...


class FaceRestorersApi(Protocol):
    """Installed face restorers (``modules.faces.FaceRestorerService``)."""

    def names(self) -> list[str]: ...

    def list(self) -> Sequence[dict[str, object]]: ...

    def restore_run_images(self, run: ProcessingRun, images: builtins.list[Image.Image]
                           ) -> tuple[builtins.list[Image.Image], builtins.list[str]]: ...


class ControlNetApi(Protocol):
    """ControlNet models and preprocessors (``modules.controlnet.ControlNetService``)."""

    def model_list(self, update: bool = True) -> dict[str, list[str]]: ...

    def module_list(self, alias_names: bool = False) -> dict[str, object]: ...

    def detect(self, module: str, images: list[str], resolution: int = -1, threshold_a: float = -1,
               threshold_b: float = -1) -> dict[str, object]: ...

    def attach(self, run: ProcessingRun, raw_units: list[object], field_prefix: str = "controlnet"
               ) -> Sequence[object]: ...


class ServerHandle(Protocol):
    """The part of ``uvicorn.Server`` the server-stop routes use."""

    should_exit: bool


@dataclass
class Lifecycle:
    """The running server and what should happen when it stops (``/sdapi/v1/server-*``)."""

    server: ServerHandle | None = None
    restart_requested: bool = False

    def stop(self, *, restart: bool = False) -> bool:
        """Ask the server to exit (and the process to start again); False when no server is running."""
        if self.server is None:
            return False
        self.restart_requested = self.restart_requested or restart
        self.server.should_exit = True
        return True


@dataclass
class Services:
    """Everything the API routers, the UI and scripts use; built once by ``webui.build_services``."""

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
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    script_dirs: list[Path] | None = None  # built-in scripts folders (default: <repo>/scripts)
    extension_roots: list[Path] | None = None  # extension folders (default: <repo>/extensions)
    ui_mounted: bool = False
    cpu_work: CpuWork = field(default_factory=lambda: CpuWork(DEFAULT_CPU_WORKERS))  # request-side CPU work
    # Built by the warm-up thread:
    device: DeviceService | None = None
    manager: ModelManagerService | None = None
    generation: GenerationRunner | None = None
    upscalers: UpscalersApi | None = None
    extras: ExtrasService | None = None
    faces: FaceRestorersApi | None = None
    controlnet: ControlNetApi | None = None
    scripts: ScriptsApi | None = None
    styles: StylesService | None = None
    networks: NetworksService | None = None
    callbacks: CallbackRegistry | None = None

    def run_job(self, job: Job, ctx: JobContext) -> JobResult | None:
        """The queue's runner: waits for the warm-up, then dispatches by job kind."""
        self.ready.wait()
        if self.startup_error:
            raise EaselError(f"Easel could not start its processing core: {self.startup_error}")
        runner = self.runners.get(job.kind)
        if runner is None:
            raise EaselError(f"no runner for job kind {job.kind!r}; known: {', '.join(sorted(self.runners))}")
        with cancellation.bound_to(ctx):  # every long loop inside the runner sees this job's cancel/interrupt
            return runner(job, ctx)

    def require_manager(self) -> ModelManagerService:
        """The model manager, for code that runs only after the warm-up (job runners)."""
        if self.manager is None:
            raise EaselError(f"the model manager is not ready: {self.startup_error or 'Easel is still starting'}")
        return self.manager

    def register_runner(self, kind: str, runner: JobRunner) -> None:
        if kind in self.runners:
            raise ValueError(f"a runner for job kind {kind!r} is already registered")
        self.runners[kind] = runner


__all__ = ["ControlNetApi", "DeviceService", "FaceRestorersApi", "GenerationRunner", "JobRunner", "Lifecycle",
           "ModelManagerService", "ScriptsApi", "ServerHandle", "Services", "UpscalersApi"]

