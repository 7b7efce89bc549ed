"""The generation service: the job queue's runner for ``txt2img``/``img2img`` jobs.

It turns a job payload (a validated request, stored as JSON) into a :class:`ProcessingRun` with the job's
options (``override_settings`` applied to a *copy*, so nothing leaks into the next job unless the request asks
for it with ``override_settings_restore_afterwards: false``), switches the model through the manager when the
options name another checkpoint, runs the processor with progress, previews, interrupt and skip wired to the
job context, and stores the result images in the data dir (``jobs/<id>/<n>.<fmt>``) for the API and UI.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modules.core.errors import UserInputError
from modules.core.settings import Options, Settings, validate_option_changes
from modules.models.vae import VaeService
from modules.processing import hires
from modules.processing.engine import StepControl
from modules.processing.image_codec import decode_base64_image
from modules.processing.image_store import ImageStore
from modules.processing.params import PARAMS_BY_KIND, GenerationParams, Img2ImgParams, check_limits
from modules.processing.processor import Processor, SaveRequest
from modules.processing.run import ProcessedResult, ProcessingHooks, ProcessingRun
from modules.processing.samplers import SamplerRegistry

log = logging.getLogger(__name__)

RunCustomizer = Callable[[ProcessingRun, GenerationParams], None]
"""Called after a run is built and before it is processed: script runners attach their hooks here."""

RunExecutor = Callable[[ProcessingRun, GenerationParams, Callable[[ProcessingRun], ProcessedResult]],
                       ProcessedResult | None]
"""Replaces processing for a selectable script (A1111 ``script.run(p, *args)``); returns None to fall back."""


@dataclass
class GenerationService:
    settings: Settings
    manager: Any  # ModelManager
    samplers: SamplerRegistry
    image_store: ImageStore
    results_root: Path
    customizers: list[RunCustomizer] = field(default_factory=list)
    executors: list[RunExecutor] = field(default_factory=list)
    extra_hooks: list[ProcessingHooks] = field(default_factory=list)
    #: Progress text sources read on each step (the execution setup says which backend runs, and a background
    #: export while it lasts); the non-empty ones are joined into the job's ``textinfo``.
    status_texts: list[Callable[[], str | None]] = field(default_factory=list)
    processor: Processor = field(init=False)
    vaes: VaeService = field(init=False)

    def __post_init__(self) -> None:
        self.vaes = VaeService(self.settings.model_paths.vae, self.manager.catalog.folder,
                               allow_pickle=self.settings.flags.allow_pickle)
        self.processor = Processor(samplers=self.samplers, model_provider=self._model_for,
                                   save_image=self._save_sample, vaes=self.vaes)

    # -- the job runner ---------------------------------------------------------------------------------------
    def run_job(self, job: Any, ctx: Any) -> dict[str, Any]:
        params_cls = PARAMS_BY_KIND.get(job.kind)
        if params_cls is None:
            raise UserInputError("kind", f"unknown job kind {job.kind!r}; allowed: {', '.join(PARAMS_BY_KIND)}")
        params = params_cls.model_validate(job.payload)
        started = time.perf_counter()
        result = self.generate(params, control=_control_for(ctx, self.settings, self.status_texts),
                               save_samples=params.save_images)
        generated = time.perf_counter()
        stored = self.store_result(job.id, result)
        finished = time.perf_counter()
        # where the job's time went: the generation (saved samples included) and the image writing within it
        stored["timings"] = {"total_s": round(finished - started, 4), "generate_s": round(generated - started, 4),
                             "saving_s": round(result.run.saving_seconds + finished - generated, 4)}
        return stored

    def generate(self, params: GenerationParams, *, control: StepControl | None = None,
                 save_samples: bool = False) -> ProcessedResult:
        options = self.job_options(params)
        run = self.build_run(params, options)
        run.do_not_save_samples = run.do_not_save_samples or not save_samples
        for customize in self.customizers:
            customize(run, params)
        if hires.switches_checkpoint(run):  # refused before the first pass, not after it
            self.manager.catalog.check(str(run.hr_checkpoint_name), "hr_checkpoint_name", allow_path=True)
        run.hooks.extend(self.extra_hooks)
        try:
            for execute in self.executors:
                result = execute(run, params, lambda p: self.processor.process(p, control))
                if result is not None:
                    break
            else:
                result = self.processor.process(run, control)
        finally:
            self.manager.trim_cache()  # models parked by a hires checkpoint switch, beyond sd_checkpoint_cache
        if not params.override_settings_restore_afterwards and params.override_settings:
            self.settings.update_options(params.override_settings)
        return result

    def job_options(self, params: GenerationParams) -> Options:
        changes = dict(params.override_settings)
        return validate_option_changes(self.settings.options, changes) if changes else self.settings.options

    def build_run(self, params: GenerationParams, options: Options) -> ProcessingRun:
        check_limits(params, self.settings.limits)  # again here: the UI's jobs skip the API's checks
        run = ProcessingRun(params, options)
        if isinstance(params, Img2ImgParams):
            if not params.init_images:
                raise UserInputError("init_images", "img2img needs at least one init image (base64)")
            max_pixels = self.settings.limits.max_image_pixels
            run.init_images = [decode_base64_image(image, f"init_images[{index}]", max_pixels)
                               for index, image in enumerate(params.init_images)]
            if params.mask:
                run.image_mask = decode_base64_image(params.mask, "mask", max_pixels)
        return run

    def _model_for(self, run: ProcessingRun) -> Any:
        wanted = run.override_settings.get("sd_model_checkpoint") or run.opts.sd_model_checkpoint
        try:
            # a switch inside a run (hires checkpoint, and back) parks the other model: the run gets it back as is
            return self.manager.ensure_loaded(wanted, park_current=run.sd_model is not None)
        except Exception as exc:
            if wanted and getattr(exc, "status_code", None) == 404:
                raise UserInputError("override_settings.sd_model_checkpoint", str(exc)) from exc
            raise

    # -- outputs ----------------------------------------------------------------------------------------------
    def _save_sample(self, request: SaveRequest) -> str | None:
        run = request.run
        if run.do_not_save_samples or not run.opts.samples_save:
            return None
        kind = "img2img" if run.is_img2img else "txt2img"
        started = time.perf_counter()
        path = self.image_store.save(
            request.image, kind=kind, seed=request.seed, prompt=request.prompt,
            infotext=request.infotext if run.opts.enable_pnginfo else None,
            extra={"steps": run.steps, "cfg": run.cfg_scale, "width": run.width, "height": run.height,
                   "sampler": run.sampler_name, "model_name": run.sd_model_name, "model_hash": run.sd_model_hash,
                   "job_timestamp": run.job_timestamp, "all_seeds": run.all_seeds,
                   "batch_number": run.batch_index, "generation_number": request.index},
            context=run)
        run.saving_seconds += time.perf_counter() - started
        return str(path)

    def store_result(self, job_id: str, result: ProcessedResult) -> dict[str, Any]:
        """Write the result images (with infotext) under ``jobs/<id>/`` and describe them as JSON."""
        folder = self.results_root / job_id
        folder.mkdir(parents=True, exist_ok=True)
        fmt = result.run.opts.samples_format
        ext = "jpg" if fmt in ("jpg", "jpeg") else fmt
        files = []
        for index, image in enumerate(result.images):
            infotext = result.infotexts[index] if index < len(result.infotexts) else None
            data = self.image_store.encoder.encode(image, infotext, fmt, result.run.opts.jpeg_quality)
            target = folder / f"{index:03d}.{ext}"
            from modules.core.atomic import atomic_write_bytes

            atomic_write_bytes(target, data)
            files.append(target.name)
        return {
            "images": files,
            "info": result.js(),
            "infotexts": result.infotexts,
            "saved": result.saved_paths,
            "warnings": result.warnings,
            "interrupted": result.interrupted,
            "finished_at": time.time(),
        }

    def result_files(self, job_id: str, result: dict[str, Any]) -> list[Path]:
        folder = self.results_root / job_id
        return [folder / name for name in result.get("images", [])]

    def delete_result(self, job: Any) -> None:
        shutil.rmtree(self.results_root / job.id, ignore_errors=True)


def _control_for(ctx: Any, settings: Settings,
                 status_texts: list[Callable[[], str | None]] | None = None) -> StepControl:
    """Bind the engine's step callbacks to a job context: progress, live previews, interrupt and skip."""
    from modules.processing.preview import PreviewMaker

    previews = PreviewMaker(settings)

    def on_step(step: int, total: int, latents: Any) -> None:
        preview = previews.maybe(step, total, latents)
        texts = [text for text in (source() for source in status_texts or ()) if text]
        ctx.report(step, total, preview=preview, textinfo="; ".join(texts) if texts else None)

    return StepControl(on_step=on_step, should_stop=ctx.should_stop, consume_skip=ctx.consume_skip)
