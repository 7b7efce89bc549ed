"""Turns a :class:`ProcessingRun` into images: txt2img, img2img and inpainting on one path.

Order of work per run (A1111's ``process_images``): hooks ``before_process`` -> prompts, styles and seeds for
every image -> hooks ``process`` -> for each of ``n_iter`` batches: ``before_process_batch``/``process_batch``,
conditioning, noise, denoise, decode, ``postprocess_batch``, per image ``postprocess_image``, infotext, save ->
``postprocess``. Hooks are :class:`ProcessingHooks`; the A1111 script runner is one implementation.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from modules.core import cancellation
from modules.core.errors import JobCancelled, UserInputError
from modules.models.vae import VaeService
from modules.processing import engine, hires
from modules.processing.engine import DenoiseRequest, InpaintSetup, SkipImage, StepControl
from modules.processing.infotext import build_infotext
from modules.processing.run import (
    EASEL_VERSION,
    DenoisePass,
    ExtraNoise,
    ImageHolder,
    ModelProvider,
    ProcessedResult,
    ProcessingRun,
    SampledLatents,
)
from modules.processing.samplers import SamplerRegistry
from modules.processing.seeds import SeedPlan, create_generators, create_noise
from modules.processing.text import TextConditioner
from modules.processing.tiling import TilingPatch
from modules.processing.timesteps import img2img_timesteps, sdxl_time_ids, txt2img_timesteps
from modules.processing.unet_extras import unet_kwargs_for

log = logging.getLogger(__name__)


@dataclass
class SaveRequest:
    image: Image.Image
    run: ProcessingRun
    seed: int
    prompt: str
    infotext: str
    index: int


ImageSaver = Callable[[SaveRequest], str | None]
"""Saves one image (when the run's settings say so) and returns its path, or None when not saved."""

FaceRestoration = Callable[[ProcessingRun, list[Image.Image]], tuple[list[Image.Image], list[str]]]
"""Restores the faces of a batch's decoded images for a run with ``restore_faces``; returns them and warnings.
Sets ``extra_generation_params["Face restoration"]`` to the model it used."""


@dataclass
class Processor:
    samplers: SamplerRegistry
    model_provider: ModelProvider
    save_image: ImageSaver | None = None
    prompt_preprocessors: list[Callable[[ProcessingRun], None]] = field(default_factory=list)
    """Run after styles, before seeds: wildcards, extra networks (LoRA) activation, ..."""
    finalizers: list[Callable[[ProcessingRun], None]] = field(default_factory=list)
    """Run when the run ends, successful or not: undo per-run weight patches (LoRA, tiling...)."""
    upscalers: hires.PixelUpscalers | None = None
    """Pixel upscalers for hires fix (the upscaler service); None = the built-in resamplers."""
    vaes: VaeService | None = None
    """External VAEs (``sd_vae``): swapped into the model for the run; None = always the checkpoint's own."""
    face_restoration: FaceRestoration | None = None
    """The face restorer service's ``restore_run_images``; None = no face restoration on this install (runs asking
    get a warning)."""
    tiling: TilingPatch = field(default_factory=TilingPatch)
    """Seamless tiling (``run.tiling``): circular padding on the run's UNet and VAE, undone when the run ends."""

    def process(self, run: ProcessingRun, control: StepControl | None = None) -> ProcessedResult:
        # A cancelled job never starts another run: a script's loop calling process_images ends here at once.
        cancellation.check_abort()
        control = control or StepControl()
        hooks = run.hooks
        for hook in hooks:
            hook.before_process(run)
        model = self.model_provider(run)
        run.sd_model = model
        run.sd_model_name = model.info.model_name
        run.sd_model_hash = model.hash
        try:
            with self.vaes.applied(run, model) if self.vaes is not None else contextlib.nullcontext():
                for preprocess in self.prompt_preprocessors:
                    preprocess(run)
                self.tiling.apply(run)  # after the VAE swap: the VAE that decodes is the one tiled
                self._plan_prompts_and_seeds(run)
                for hook in hooks:
                    hook.process(run)
                with torch.no_grad():
                    return self._process_batches(run, model, control)
        finally:
            self.tiling.finish(run)
            if hires.switches_checkpoint(run):
                self._reload_main_model(run)
            for finalize in self.finalizers:
                try:
                    finalize(run)
                except Exception:
                    log.exception("finalizer %r failed", finalize)

    def _reload_main_model(self, run: ProcessingRun) -> Any:
        """After a hires pass on ``hr_checkpoint_name``: the run's own checkpoint again, so the next batch's first
        pass (and the next job) find the model manager where the options say it is."""
        try:
            model = self.model_provider(run)
        except Exception:
            log.exception("switching back from the hires checkpoint failed")
            return run.sd_model
        run.sd_model = model
        return model

    # -- planning -------------------------------------------------------------------------------------------
    def _plan_prompts_and_seeds(self, run: ProcessingRun) -> None:
        count = run.batch_size * run.n_iter
        if not run.all_prompts:
            prompts = run.prompt if isinstance(run.prompt, list) else [run.prompt] * count
            run.all_prompts = list(prompts)[:count] or [""] * count
        if not run.all_negative_prompts:
            negatives = run.negative_prompt if isinstance(run.negative_prompt, list) else [run.negative_prompt] * count
            run.all_negative_prompts = list(negatives)[:count]
        if not run.all_seeds:
            plan = SeedPlan.create(run.seed, run.subseed, run.subseed_strength, count,
                                   run.seed_resize_from_w, run.seed_resize_from_h)
            run.all_seeds, run.all_subseeds = plan.seeds, plan.subseeds
            run.seed, run.subseed = plan.seeds[0], plan.subseeds[0]

    def _seed_plan(self, run: ProcessingRun) -> SeedPlan:
        resize = None
        if run.seed_resize_from_w > 0 and run.seed_resize_from_h > 0:
            resize = (run.seed_resize_from_w, run.seed_resize_from_h)
        return SeedPlan(list(run.all_seeds), list(run.all_subseeds), run.subseed_strength, resize)

    # -- batches --------------------------------------------------------------------------------------------
    def _process_batches(self, run: ProcessingRun, model: Any, control: StepControl) -> ProcessedResult:
        hooks = run.hooks
        pipe = model.pipe
        images: list[Image.Image] = []
        infotexts: list[str] = []
        saved: list[str] = []
        warnings: list[str] = list(run.warnings)
        interrupted = False
        plan = self._seed_plan(run)
        conditioner = TextConditioner(pipe, clip_skip=run.clip_skip, emphasis=run.opts.emphasis,
                                      embeddings=run.extra_network_data.get("embeddings"))
        init_state: InitState | None = None
        try:
            if run.is_img2img and not control.should_stop():
                init_state = self._prepare_init_images(run, model)
        except JobCancelled:  # stopped inside the VAE encode of the init images
            interrupted = True
        for iteration in range(run.n_iter):
            if interrupted or control.should_stop():  # A1111: an interrupted run starts no further batch
                interrupted = True
                break
            run.iteration = iteration
            if iteration > 0 and hires.switches_checkpoint(run):
                current = self._reload_main_model(run)
                if current is not model:
                    model = current
                    conditioner = TextConditioner(model.pipe, clip_skip=run.clip_skip, emphasis=run.opts.emphasis,
                                                  embeddings=run.extra_network_data.get("embeddings"))
            start = iteration * run.batch_size
            indices = range(start, start + run.batch_size)
            prompts = run.all_prompts[start:start + run.batch_size]
            negatives = run.all_negative_prompts[start:start + run.batch_size]
            seeds = run.all_seeds[start:start + run.batch_size]
            subseeds = run.all_subseeds[start:start + run.batch_size]
            for hook in hooks:
                hook.before_process_batch(run, batch_number=iteration, prompts=prompts, seeds=seeds,
                                          subseeds=subseeds)
            for hook in hooks:
                hook.process_batch(run, batch_number=iteration, prompts=prompts, seeds=seeds, subseeds=subseeds)
            batch_control = _batch_control(control, iteration, run.n_iter)
            try:
                batch_images, batch_warnings = self._generate_batch(
                    run, model, conditioner, plan, indices, prompts, negatives, init_state, batch_control)
            except SkipImage:
                warnings.append(f"batch {iteration + 1} skipped")
                continue
            except JobCancelled:
                interrupted = True
                break
            for warning in batch_warnings:
                if warning not in warnings:
                    warnings.append(warning)
            for hook in hooks:
                hook.postprocess_batch(run, batch_images, batch_number=iteration)
            for offset, image in enumerate(batch_images):
                index = start + offset
                run.batch_index = offset
                holder = ImageHolder(image)
                for hook in hooks:
                    hook.postprocess_image(run, holder)
                for hook in hooks:
                    hook.postprocess_image_after_composite(run, holder)
                infotext = self.infotext(run, index)
                images.append(holder.image)
                infotexts.append(infotext)
                if self.save_image is not None:
                    path = self.save_image(SaveRequest(holder.image, run, run.all_seeds[index],
                                                       run.all_prompts[index], infotext, index))
                    if path:
                        saved.append(path)
            if control.should_stop():
                interrupted = True
                break
        result = ProcessedResult(
            run=run, images=images, infotexts=infotexts, all_prompts=list(run.all_prompts),
            all_negative_prompts=list(run.all_negative_prompts), all_seeds=list(run.all_seeds),
            all_subseeds=list(run.all_subseeds), warnings=warnings, saved_paths=saved, interrupted=interrupted,
            describe=self.infotext)
        for hook in hooks:
            hook.postprocess(run, result)
        return result

    def _generate_batch(self, run: ProcessingRun, model: Any, conditioner: TextConditioner, plan: SeedPlan,
                        indices: range, prompts: list[str], negatives: list[str], init_state: InitState | None,
                        control: StepControl) -> tuple[list[Image.Image], list[str]]:
        pipe = model.pipe
        unet, vae = pipe.unet, pipe.vae
        # the execution device, not unet.device: under CPU offload the UNet's weights rest elsewhere between calls
        device = conditioner.execution_device if conditioner.pipe is pipe else None
        if device is None:
            device = getattr(pipe, "_execution_device", unet.device)
        dtype = unet.dtype
        scheduler, warnings = self.samplers.build(pipe.scheduler, *self.samplers.split_sampler_and_schedule(
            run.sampler_name, run.scheduler))
        scale = pipe.vae_scale_factor
        channels = vae.config.latent_channels
        latent_shape = (channels, run.height // scale, run.width // scale)
        generators = create_generators([plan.seeds[i] for i in indices])
        noise = create_noise(plan, indices, latent_shape, generators, latent_scale=scale).to(device, dtype)
        cond = conditioner.batch(prompts, negatives, run.steps)
        timesteps, steps_total = txt2img_timesteps(scheduler, run.steps, device)
        inpaint: InpaintSetup | None = None
        if init_state is None:
            latents = noise * scheduler.init_noise_sigma
        else:
            strength = run.denoising_strength if run.denoising_strength is not None else 0.75
            timesteps, steps_total = img2img_timesteps(scheduler, run.steps, strength, device)
            init_latents = init_state.latents_for(indices, generators).to(device, dtype)
            if timesteps:
                first = timesteps[0].repeat(len(indices))
                latents = scheduler.add_noise(init_latents, noise * run.initial_noise_multiplier, first)
                latents = self._extra_noise(run, noise, init_latents, latents)
            else:
                latents = init_latents
            if init_state.latent_mask is not None:
                mask = init_state.latent_mask.to(device, dtype).expand(len(indices), -1, -1, -1)
                if run.inpainting_fill == 2:
                    latents = latents * (1 - mask) + noise * scheduler.init_noise_sigma * mask
                elif run.inpainting_fill == 3:
                    latents = latents * (1 - mask)
                masked = None
                if unet.config.in_channels == 9 and init_state.latent_mask_hard is not None:
                    masked = init_state.masked_latents_for(indices, generators).to(device, dtype)
                    mask = init_state.latent_mask_hard.to(device, dtype).expand(len(indices), -1, -1, -1)
                inpaint = InpaintSetup(mask=mask, init_latents=init_latents, noise=noise, masked_image_latents=masked)
        added_time_ids = sdxl_time_ids(pipe, run.width, run.height, len(indices), device, dtype)
        extras = unet_kwargs_for(run, DenoisePass(run, pipe, timesteps, run.width, run.height, len(indices),
                                                  engine.do_cfg(unet, run.cfg_scale)))
        for hook in run.hooks:
            hook.before_sampling(run, x=latents, noise=noise, c=cond.conds, uc=cond.uncond)
        request = DenoiseRequest(
            latents=latents, timesteps=timesteps, uncond=cond.uncond, conds=cond.conds, cfg_scale=run.cfg_scale,
            generators=generators, eta=run.eta, added_time_ids=added_time_ids, inpaint=inpaint, unet_kwargs=extras,
            hooks=list(run.denoise_hooks), control=control, steps_for_report=steps_total)
        try:
            latents = engine.denoise(unet, scheduler, request)
        except engine.Interrupted as stop:
            latents = stop.latents  # A1111 returns the partly denoised image of an interrupted batch
        # hook point: the txt2img batch's latents are ready for a hires second pass
        if init_state is None and run.enable_hr and not control.should_stop():
            latents, hr_model, hr_warnings = hires.second_pass(hires.FirstPass(
                self.samplers, self.model_provider, self.upscalers, run, model, conditioner, plan, indices, prompts,
                negatives, latents, control))
            vae, pipe = hr_model.pipe.vae, hr_model.pipe
            warnings = [*warnings, *hr_warnings]
        samples = SampledLatents(latents)
        for hook in run.hooks:  # A1111's post_sample: may replace the latents
            hook.post_sample(run, samples)
        latents = samples.samples
        images = engine.decode_latents(vae, pipe.image_processor, latents,
                                       generators[0] if len(generators) == 1 else generators)
        if run.restore_faces:  # A1111: on the decoded pixels, before the inpaint overlay puts the unmasked back
            images, face_warnings = self._restore_faces(run, images)
            warnings = [*warnings, *face_warnings]
        if init_state is not None:
            images = [init_state.finish(image) for image in images]
        return images, warnings

    @staticmethod
    def _extra_noise(run: ProcessingRun, noise: torch.Tensor, init: torch.Tensor, noised: torch.Tensor) -> torch.Tensor:
        """A1111's ``img2img_extra_noise`` option: more of the same noise on the noised init latents; hooks'
        ``extra_noise`` (A1111's callback of that name) may replace the noise first."""
        strength = float(getattr(run.opts, "img2img_extra_noise", 0.0) or 0.0)
        if strength <= 0:
            return noised
        run.extra_generation_params["Extra noise"] = strength
        params = ExtraNoise(noise, init, noised)
        for hook in run.hooks:
            hook.extra_noise(run, params)
        return noised + params.noise * strength

    def _restore_faces(self, run: ProcessingRun, images: list[Image.Image]) -> tuple[list[Image.Image], list[str]]:
        if self.face_restoration is None:
            return images, ["face restoration skipped: face restoration is not installed"]
        return self.face_restoration(run, images)

    # -- img2img --------------------------------------------------------------------------------------------
    def _prepare_init_images(self, run: ProcessingRun, model: Any) -> InitState:
        return InitState.create(run, model.pipe)

    # -- infotext -------------------------------------------------------------------------------------------
    def infotext(self, run: ProcessingRun, index: int) -> str:
        sampler, schedule = self.samplers.split_sampler_and_schedule(run.sampler_name, run.scheduler)
        schedule_label = self.samplers.get_schedule(schedule).label
        opts = run.opts
        params: dict[str, Any] = {
            "Steps": run.steps,
            "Sampler": sampler,
            "Schedule type": None if schedule_label == "Automatic" else schedule_label,
            "CFG scale": _number(run.cfg_scale),
            "Seed": run.all_seeds[index],
            "Face restoration": None,  # here for A1111's key order; the restorer that ran sets the value
            "Size": f"{run.width}x{run.height}",
            "Model hash": run.sd_model_hash if opts.add_model_hash_to_info else None,
            "Model": run.sd_model_name if opts.add_model_name_to_info else None,
            "VAE hash": run.sd_vae_hash if opts.add_vae_hash_to_info else None,
            "VAE": run.sd_vae_name if opts.add_vae_name_to_info else None,
            "Variation seed": run.all_subseeds[index] if run.subseed_strength > 0 else None,
            "Variation seed strength": _number(run.subseed_strength) if run.subseed_strength > 0 else None,
            "Seed resize from": (f"{run.seed_resize_from_w}x{run.seed_resize_from_h}"
                                 if run.seed_resize_from_w > 0 and run.seed_resize_from_h > 0 else None),
            "Denoising strength": _number(run.denoising_strength) if run.is_img2img else None,
            "Mask blur": run.mask_blur if run.is_inpaint else None,
            "Clip skip": run.clip_skip if run.clip_skip > 1 else None,
            "Tiling": True if run.tiling else None,
            "Styles": ", ".join(run.styles) if run.styles else None,
            "RNG": "CPU",
        }
        for key, value in run.extra_generation_params.items():
            if callable(value):
                value = value(index)  # A1111 allows per-image callables
            elif isinstance(value, list):
                value = value[index] if index < len(value) else None
            params[key] = value
        params["Version"] = EASEL_VERSION
        prompt = run.all_prompts[index] if index < len(run.all_prompts) else str(run.prompt)
        negative = run.all_negative_prompts[index] if index < len(run.all_negative_prompts) else ""
        return build_infotext(prompt, negative, params)


def _number(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else round(float(value), 4)


def _batch_control(control: StepControl, iteration: int, n_iter: int) -> StepControl:
    return StepControl(on_step=control.on_step, should_stop=control.should_stop, consume_skip=control.consume_skip)


# -- img2img / inpaint preparation ---------------------------------------------------------------------------------
def resize_image(image: Image.Image, width: int, height: int, mode: int) -> Image.Image:
    """A1111 resize modes: 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale (as 0 here)."""
    image = image.convert("RGB")
    if mode in (0, 3):
        return image.resize((width, height), Image.Resampling.LANCZOS)
    if mode == 1:
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    ratio = min(width / image.width, height / image.height)
    fitted = image.resize((max(1, round(image.width * ratio)), max(1, round(image.height * ratio))),
                          Image.Resampling.LANCZOS)
    canvas = fitted.resize((width, height), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(8))
    canvas.paste(fitted, ((width - fitted.width) // 2, (height - fitted.height) // 2))
    return canvas


def _fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Inpainting fill mode 0: masked pixels take the blurred colours of their surroundings."""
    pixels = np.asarray(image, dtype=np.float32)
    keep = 1.0 - np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    result = pixels.copy()
    for radius in (256, 64, 16, 4, 2):
        cancellation.checkpoint()
        weight_img = Image.fromarray((keep[..., 0] * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
        colour_img = Image.fromarray((pixels * keep).clip(0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(radius))
        weight = np.asarray(weight_img, dtype=np.float32)[..., None] / 255.0
        blurred = np.asarray(colour_img, dtype=np.float32) / np.maximum(weight, 1e-3)
        result = np.where(keep > 0.5, pixels, np.where(weight > 0.01, blurred, result))
    return Image.fromarray(result.clip(0, 255).astype(np.uint8))


@dataclass
class InitState:
    """Init images (and mask) of an img2img run, ready for the latent space."""

    run: ProcessingRun
    pipe: Any
    images: list[Image.Image]
    originals: list[Image.Image]
    mask: Image.Image | None
    blurred_mask: Image.Image | None
    crop_box: tuple[int, int, int, int] | None
    latent_mask: torch.Tensor | None
    latent_mask_hard: torch.Tensor | None
    _latents: torch.Tensor | None = None

    @classmethod
    def create(cls, run: ProcessingRun, pipe: Any) -> InitState:
        width, height = run.width, run.height
        originals = [image.convert("RGB") for image in run.init_images]
        mask = run.image_mask
        crop_box = None
        blurred = None
        if mask is not None:
            mask = mask.convert("L")
            if run.inpainting_mask_invert:
                mask = ImageOps.invert(mask)
            mask = mask.resize(originals[0].size, Image.Resampling.NEAREST) if mask.size != originals[0].size \
                else mask
            blurred = _blur_mask(mask, run.mask_blur_x, run.mask_blur_y)
            if run.inpaint_full_res:
                crop_box = _expand_crop(mask, run.inpaint_full_res_padding, width, height)
                if crop_box is not None:
                    mask = mask.crop(crop_box)
        images = []
        for image in originals:
            cancellation.checkpoint()  # large init images: each resize is a unit of work a cancel waits for
            if crop_box is not None:
                image = image.crop(crop_box).resize((width, height), Image.Resampling.LANCZOS)
            else:
                image = resize_image(image, width, height, run.resize_mode)
            images.append(image)
        work_mask = None
        if mask is not None:
            work_mask = _blur_mask(mask.resize((width, height), Image.Resampling.LANCZOS), run.mask_blur_x,
                                   run.mask_blur_y)
            if run.inpainting_fill == 0:
                images = [_fill_masked(image, work_mask) for image in images]
        latent_mask = latent_mask_hard = None
        if work_mask is not None:
            scale = pipe.vae_scale_factor
            small = work_mask.resize((width // scale, height // scale), Image.Resampling.BILINEAR)
            array = torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0)[None, None]
            latent_mask_hard = (array > 0.5).float()
            latent_mask = torch.round(array) if _mask_round(run) else array
        return cls(run, pipe, images, originals, work_mask, blurred, crop_box, latent_mask, latent_mask_hard)

    def latents_for(self, indices: range, generators: list[torch.Generator]) -> torch.Tensor:
        pixels = self._pixels([self.images[i % len(self.images)] for i in indices])
        return engine.encode_images(self.pipe.vae, pixels, generators)

    def masked_latents_for(self, indices: range, generators: list[torch.Generator]) -> torch.Tensor:
        assert self.mask is not None
        keep = (np.asarray(self.mask, dtype=np.float32) / 255.0 < 0.5)[..., None]
        masked = [Image.fromarray((np.asarray(self.images[i % len(self.images)]) * keep).astype(np.uint8))
                  for i in indices]
        return engine.encode_images(self.pipe.vae, self._pixels(masked), generators)

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.pipe.image_processor.preprocess(images, height=self.run.height, width=self.run.width)
        return pixels.to(self.pipe.vae.device)

    def finish(self, image: Image.Image) -> Image.Image:
        """Paste an inpainted result back: only the masked region changes (A1111's overlay)."""
        if self.blurred_mask is None:
            return image
        original = self.originals[0]
        if self.crop_box is not None:
            left, top, right, bottom = self.crop_box
            patch = image.resize((right - left, bottom - top), Image.Resampling.LANCZOS)
            base = original.copy()
            base.paste(patch, (left, top))
            image = base
        elif image.size != original.size:
            original = resize_image(original, image.width, image.height, self.run.resize_mode)
        mask = self.blurred_mask if self.blurred_mask.size == image.size else self.blurred_mask.resize(image.size)
        return Image.composite(image, original, mask)


def _mask_round(run: ProcessingRun) -> bool:
    params = run.params
    return bool(getattr(params, "mask_round", True))


def _blur_mask(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    if blur_x <= 0 and blur_y <= 0:
        return mask
    array = np.asarray(mask, dtype=np.float32)
    if blur_x > 0:
        array = _blur_axis(array, blur_x, axis=1)
    if blur_y > 0:
        array = _blur_axis(array, blur_y, axis=0)
    return Image.fromarray(array.clip(0, 255).astype(np.uint8))


def _blur_axis(array: np.ndarray, sigma: int, axis: int) -> np.ndarray:
    radius = max(1, int(2.5 * sigma + 0.5))
    positions = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-(positions**2) / (2 * sigma * sigma))
    kernel /= kernel.sum()
    padded = np.pad(array, [(radius, radius) if a == axis else (0, 0) for a in range(2)], mode="edge")
    return np.apply_along_axis(lambda row: np.convolve(row, kernel, mode="valid"), axis, padded)


def _expand_crop(mask: Image.Image, padding: int, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Bounding box of the mask plus padding, grown to the target aspect ratio and kept inside the image."""
    box = mask.getbbox()
    if box is None:
        return None
    left, top, right, bottom = box
    left, top = max(0, left - padding), max(0, top - padding)
    right, bottom = min(mask.width, right + padding), min(mask.height, bottom + padding)
    ratio = width / height
    box_w, box_h = right - left, bottom - top
    if box_w / box_h < ratio:
        grow = int(box_h * ratio) - box_w
        left, right = left - grow // 2, right + grow - grow // 2
    else:
        grow = int(box_w / ratio) - box_h
        top, bottom = top - grow // 2, bottom + grow - grow // 2
    if right - left > mask.width:
        left, right = 0, mask.width
    if bottom - top > mask.height:
        top, bottom = 0, mask.height
    shift_x = -left if left < 0 else (mask.width - right if right > mask.width else 0)
    shift_y = -top if top < 0 else (mask.height - bottom if bottom > mask.height else 0)
    return left + shift_x, top + shift_y, right + shift_x, bottom + shift_y


def check_init_images(run: ProcessingRun) -> None:
    if run.params.is_img2img and not run.init_images:
        raise UserInputError("init_images", "img2img needs at least one init image")
