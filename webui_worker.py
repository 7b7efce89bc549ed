"""Composition root of Easel's remote workers (``--workers N`` / ``--ray-address HOST:PORT``).

Two halves:

* in the API process, :func:`start_cluster_workers` joins or starts the Ray cluster, starts the worker actors
  and puts them in the job queue's place of the in-process worker; :func:`accept_remote_result` stores what a
  worker sends back exactly as a local run stores it (``jobs/<id>/`` result files, and every sample saved
  through the image store replayed into this process's outputs folder, with its infotext and name pattern).
* in each worker process, :class:`EaselWorkerRuntime` builds the same services ``webui.py`` builds (device,
  model manager, generation service, scripts, extensions, LoRA, ControlNet) over a private scratch folder, and
  runs jobs with the API process's current options.

Imported only when a cluster flag is given, so a plain start never imports Ray.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from modules.core.settings import CmdFlags, Options, Settings
from modules.jobs import Job, JobContext, RunnerResult
from modules.processing.image_store import ImageStore
from webui import Services, build_services, warm_up

if TYPE_CHECKING:
    from modules.jobs import ray_workers

log = logging.getLogger("easel.workers")

FACTORY = "webui_worker:EaselWorkerRuntime"


@dataclass(frozen=True)
class SampleSave:
    """One ``ImageStore.save`` call made on a worker, replayed in the API process."""

    placeholder: str
    image: Image.Image
    arguments: Mapping[str, object]


class RecordingImageStore(ImageStore):
    """The worker's image store: records each save (the API process writes it) and returns a placeholder path."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.saves: list[SampleSave] = []

    def save(self, image: Image.Image, **arguments: object) -> Path:  # type: ignore[override]
        # ``context`` (the run, for the store's listeners) stays here: the listeners run once, in the API
        # process, when the save is replayed there, and see no run (as for an extras image in A1111).
        arguments.pop("context", None)
        placeholder = self.root / f"pending-{len(self.saves)}"
        self.saves.append(SampleSave(str(placeholder), image.copy(), dict(arguments)))
        return placeholder


class EaselWorkerRuntime:
    """Easel's processing core inside one Ray actor (one device: the GPU Ray assigned it, or the CPU)."""

    def __init__(self, flags: CmdFlags, options: Options, omp_num_threads: str | None = None,
                 torch_threads: int | None = None) -> None:
        # Ray gives an actor that reserves no CPU OMP_NUM_THREADS=1; torch then computes on one thread, and a
        # different thread count changes CPU results in the last bits. Use the API process's setting and its
        # torch thread count instead (the environment alone is too late where torch is already imported), so a
        # CPU worker computes like the in-process worker.
        if omp_num_threads is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp_num_threads
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        self.scratch = Path(tempfile.mkdtemp(prefix="easel-worker-"))
        flags = flags.model_copy(update={"data_dir": self.scratch, "workers": None, "ray_address": None})
        self.settings = Settings(flags, options)
        self.services: Services = build_services(self.settings)
        self.recorder = RecordingImageStore(self.settings.data_paths.outputs)
        self.services.image_store = self.recorder
        warm_up(self.services, load_model=False)
        if self.services.startup_error:
            raise RuntimeError(f"the worker could not start its processing core: {self.services.startup_error}")

    def run(self, job: Job, ctx: JobContext, context: object) -> ray_workers.RemoteReply:
        from modules.jobs import ray_workers

        if isinstance(context, Options) and context != self.settings.options:
            self.settings.update_options(context.model_dump(), save=False)
        self.recorder.saves.clear()
        folder = self.settings.data_paths.job_results / job.id
        try:
            result = self.services.run_job(job, ctx)
            names = (result or {}).get("images")
            files = {name: (folder / name).read_bytes() for name in (names if isinstance(names, list) else [])
                     if isinstance(name, str) and (folder / name).is_file()}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return ray_workers.RemoteReply(result=result, files=files, extra=list(self.recorder.saves))

    def device(self) -> str:
        return str(self.services.device.describe()) if self.services.device is not None else "starting"

    def loaded_models(self) -> tuple[str, ...]:
        current = self.services.manager.current if self.services.manager is not None else None
        return (current.info.title,) if current is not None else ()

    def free_memory(self) -> int | None:
        from modules.devices.select import Device

        device = self.services.device
        if not isinstance(device, Device):
            return None
        try:
            return int(device.memory_info().free)
        except Exception:  # a backend that cannot tell
            return None


def accept_remote_result(services: Services) -> ray_workers.Accept:
    """Store a worker's reply in this process: result files under ``jobs/<id>/``, samples into the outputs."""
    from modules.jobs import ray_workers

    store_files = ray_workers.store_files(services.settings.data_paths.job_results)

    def accept(job: Job, reply: ray_workers.RemoteReply) -> RunnerResult | None:
        result = store_files(job, reply)
        saves = reply.extra if isinstance(reply.extra, list) else []
        paths: dict[str, str] = {}
        for save in saves:
            if isinstance(save, SampleSave):
                arguments = dict(save.arguments)
                paths[save.placeholder] = str(services.image_store.save(save.image, **arguments))  # type: ignore[arg-type]
        if result is not None and isinstance(result.get("saved"), list):
            saved = result["saved"]
            assert isinstance(saved, list)
            result = {**result, "saved": [paths.get(path, path) if isinstance(path, str) else path for path in saved]}
        return result

    return accept


def worker_arguments(settings: Settings) -> tuple[object, ...]:
    """What :class:`EaselWorkerRuntime` is built from: the flags, the current options, the thread settings."""
    import torch

    return (settings.flags, settings.options, os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads())


def start_cluster_workers(services: Services) -> list[ray_workers.RayWorker]:
    """Join (``--ray-address``) or start (``--workers``) the Ray cluster; the queue's workers become its actors."""
    flags = services.settings.flags
    if flags.ray_address:  # never talk to a shared cluster without its token (docs/SCALE-OUT.md)
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    else:  # a private cluster binds to loopback only (Ray reads this when it is imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from modules.jobs import ray_workers

    ray_workers.connect(flags.ray_address)
    count = ray_workers.worker_count(flags.workers or "auto")
    workers = ray_workers.start_workers(count, FACTORY, worker_arguments(services.settings),
                                        accept=accept_remote_result(services),
                                        context=lambda: services.settings.options)
    services.queue.set_workers(workers)
    log.info("%d Ray worker(s) on %s", count, flags.ray_address or "a private local cluster")
    return workers
