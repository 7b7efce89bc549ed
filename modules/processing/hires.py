"""Hires fix: a second, img2img-style pass over the txt2img latents at a larger size.

The first pass's latents are enlarged either in latent space (A1111's "Latent ..." modes: interpolate, then
denoise) or in pixel space (decode, run a pixel upscaler such as Lanczos or an ESRGAN model, encode again),
then noised to ``denoising_strength`` and denoised with ``hr_second_pass_steps`` (or the first pass's steps),
the hires sampler and the hires prompts. The size rules are A1111's:

- ``hr_resize_x = hr_resize_y = 0``: ``width * hr_scale`` x ``height * hr_scale``;
- only one of them set: the other follows the first pass's aspect ratio;
- both set: upscale until the target is covered, then crop the centre to exactly that size.

``hr_checkpoint_name`` runs the second pass on another checkpoint: the first pass is decoded (for pixel
upscalers) before the switch, the hires checkpoint is loaded through the processor's model provider (the model
manager), and the processor switches back to the run's own checkpoint before the next batch and at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from PIL import Image

from modules.core.errors import EaselError, UserInputError
from modules.processing import engine
from modules.processing.engine import DenoiseRequest, StepControl
from modules.processing.run import DenoisePass, ModelProvider, ProcessingRun
from modules.processing.samplers import SamplerRegistry
from modules.processing.seeds import SeedPlan, create_generators, create_noise
from modules.processing.text import TextConditioner
from modules.processing.timesteps import img2img_timesteps, sdxl_time_ids
from modules.processing.unet_extras import unet_kwargs_for
from modules.upscalers.base import Upscaler
from modules.upscalers.latent import DEFAULT_LATENT_MODE, LATENT_MODES, is_latent_mode, upscale_latents
from modules.upscalers.service import UpscalerRegistry

if TYPE_CHECKING:
    from modules.models.manager import LoadedModel

DEFAULT_HIRES_DENOISING = 0.7
SAME_SAMPLER = ("", "Use same sampler")
SAME_CHECKPOINT = ("", "Use same checkpoint")


@dataclass(frozen=True)
class HiresSize:
    """Second-pass pixel size, and the (larger or equal) size upscaled to before the centre crop."""

    width: int
    height: int
    upscale_width: int
    upscale_height: int


def hires_size(width: int, height: int, hr_scale: float, resize_x: int, resize_y: int, multiple: int = 8) -> HiresSize:
    if resize_x == 0 and resize_y == 0:
        target = (int(width * hr_scale), int(height * hr_scale))
        cover = target
    elif resize_y == 0:
        target = cover = (resize_x, resize_x * height // width)
    elif resize_x == 0:
        target = cover = (resize_y * width // height, resize_y)
    else:
        target = (resize_x, resize_y)
        if width / height < resize_x / resize_y:
            cover = (resize_x, resize_x * height // width)
        else:
            cover = (resize_y * width // height, resize_y)

    def snap(value: int) -> int:
        return max(multiple, value // multiple * multiple)

    return HiresSize(snap(target[0]), snap(target[1]), max(snap(cover[0]), snap(target[0])),
                     max(snap(cover[1]), snap(target[1])))


def switches_checkpoint(run: ProcessingRun) -> bool:
    """Whether the run's second pass asks for a checkpoint of its own ("Use same checkpoint", None, "" do not)."""
    return bool(run.enable_hr and not run.is_img2img
                and run.hr_checkpoint_name not in (None, *SAME_CHECKPOINT))


def run_hires_size(run: ProcessingRun, multiple: int = 8) -> HiresSize:
    return hires_size(run.width, run.height, run.hr_scale, run.hr_resize_x, run.hr_resize_y, multiple)


def hr_prompts(run: ProcessingRun, prompts: list[str], negatives: list[str]) -> tuple[list[str], list[str]]:
    """A1111: an empty hires prompt means "the same as the first pass"."""
    positive = [run.hr_prompt] * len(prompts) if run.hr_prompt else list(prompts)
    negative = [run.hr_negative_prompt] * len(negatives) if run.hr_negative_prompt else list(negatives)
    return positive, negative


def annotate(run: ProcessingRun) -> None:
    """Hires infotext keys (``Hires upscale`` ... ``Denoising strength``), in A1111's order."""
    params = run.extra_generation_params
    if run.denoising_strength is None:
        run.denoising_strength = DEFAULT_HIRES_DENOISING
    params["Denoising strength"] = _number(run.denoising_strength)
    if run.hr_resize_x == 0 and run.hr_resize_y == 0:
        params["Hires upscale"] = _number(run.hr_scale)
    else:
        params["Hires resize"] = f"{run.hr_resize_x}x{run.hr_resize_y}"
    if run.hr_second_pass_steps:
        params["Hires steps"] = run.hr_second_pass_steps
    params["Hires upscaler"] = run.hr_upscaler or DEFAULT_LATENT_MODE
    if run.hr_checkpoint_name not in (None, *SAME_CHECKPOINT):
        params["Hires checkpoint"] = run.hr_checkpoint_name
    if run.hr_sampler_name not in (None, *SAME_SAMPLER) and run.hr_sampler_name != run.sampler_name:
        params["Hires sampler"] = run.hr_sampler_name
    if run.hr_scheduler not in (None, "", "Use same scheduler") and run.hr_scheduler != run.scheduler:
        params["Hires schedule type"] = run.hr_scheduler
    if run.hr_prompt and run.hr_prompt != run.prompt:
        params["Hires prompt"] = run.hr_prompt
    if run.hr_negative_prompt and run.hr_negative_prompt != run.negative_prompt:
        params["Hires negative prompt"] = run.hr_negative_prompt


class PixelUpscalers(Protocol):
    """Upscalers by name (the upscaler service, or a registry of the built-in resamplers)."""

    def get(self, name: str, field: str = "upscaler") -> Upscaler: ...


@dataclass
class FirstPass:
    """The state of one txt2img batch when its first-pass latents are ready (the processor's hook point)."""

    samplers: SamplerRegistry
    model_provider: ModelProvider
    upscalers: PixelUpscalers | None
    run: ProcessingRun
    model: LoadedModel
    conditioner: TextConditioner
    plan: SeedPlan
    indices: range
    prompts: list[str]
    negatives: list[str]
    latents: torch.Tensor
    control: StepControl


def second_pass(first: FirstPass) -> tuple[torch.Tensor, LoadedModel, list[str]]:
    """Return the second pass's latents, the model that made them (decode with its VAE) and warnings."""
    run = first.run
    for hook in run.hooks:  # A1111's Script.before_hr(p)
        hook.before_hr(run)
    annotate(run)
    upscaler = run.hr_upscaler or DEFAULT_LATENT_MODE
    first_images: list[Image.Image] = []
    if not is_latent_mode(upscaler):
        registry = first.upscalers or _default_registry()
        chosen = registry.get(upscaler, "hr_upscaler")
        first_pipe = first.model.pipe  # decoded before a hires checkpoint replaces this model
        first_images = engine.decode_latents(first_pipe.vae, first_pipe.image_processor, first.latents)
    model, conditioner = _hires_model(first)
    if switches_checkpoint(run):
        run.extra_generation_params["Hires checkpoint"] = model.info.title
    pipe = model.pipe
    unet, vae = pipe.unet, pipe.vae
    device, dtype = unet.device, unet.dtype
    scale = pipe.vae_scale_factor
    size = run_hires_size(run, multiple=scale)
    seeds = [first.plan.seeds[i] for i in first.indices]
    if is_latent_mode(upscaler):
        init = upscale_latents(first.latents, (size.upscale_height // scale, size.upscale_width // scale), upscaler)
        init = _centre_crop(init, size.height // scale, size.width // scale)
    else:
        upscaled = [_upscale_to(chosen, image, size) for image in first_images]
        pixels = pipe.image_processor.preprocess(upscaled, height=size.height, width=size.width).to(vae.device)
        init = engine.encode_images(vae, pixels, create_generators(seeds))
    init = init.to(device, dtype)
    sampler_name = run.sampler_name if run.hr_sampler_name in (None, *SAME_SAMPLER) else run.hr_sampler_name
    schedule = run.scheduler if run.hr_scheduler in (None, "", "Use same scheduler") else run.hr_scheduler
    scheduler, warnings = first.samplers.build(
        pipe.scheduler, *first.samplers.split_sampler_and_schedule(sampler_name, schedule))
    steps = run.hr_second_pass_steps or run.steps
    strength = DEFAULT_HIRES_DENOISING if run.denoising_strength is None else float(run.denoising_strength)
    timesteps, steps_total = img2img_timesteps(scheduler, steps, strength, device)
    generators = create_generators(seeds)
    plan = SeedPlan(first.plan.seeds, first.plan.subseeds, first.plan.subseed_strength, None)
    noise = create_noise(plan, first.indices, (init.shape[1], init.shape[2], init.shape[3]), generators,
                         latent_scale=scale).to(device, dtype)
    latents = scheduler.add_noise(init, noise, timesteps[0].repeat(len(first.indices))) if timesteps else init
    prompts, negatives = hr_prompts(run, first.prompts, first.negatives)
    cond = conditioner.batch(prompts, negatives, steps)
    added_time_ids = sdxl_time_ids(pipe, size.width, size.height, len(first.indices), device, dtype)
    guidance = engine.do_cfg(unet, run.cfg_scale)
    extras = unet_kwargs_for(run, DenoisePass(run, pipe, timesteps, size.width, size.height, len(first.indices),
                                              guidance, second_pass=True))
    for hook in run.hooks:  # A1111's process_before_every_sampling, for the second pass too
        hook.before_sampling(run, x=latents, noise=noise, c=cond.conds, uc=cond.uncond)
    request = DenoiseRequest(
        latents=latents, timesteps=timesteps, uncond=cond.uncond, conds=cond.conds, cfg_scale=run.cfg_scale,
        generators=generators, eta=run.eta, added_time_ids=added_time_ids, unet_kwargs=extras,
        hooks=list(run.denoise_hooks), control=first.control, steps_for_report=steps_total)
    return engine.denoise(unet, scheduler, request), model, warnings


def _hires_model(first: FirstPass) -> tuple[LoadedModel, TextConditioner]:
    """The second pass's model: the first pass's, or ``hr_checkpoint_name`` loaded through the model provider."""
    run = first.run
    if not switches_checkpoint(run):
        return first.model, first.conditioner
    previous = run.override_settings.get("sd_model_checkpoint")
    run.override_settings["sd_model_checkpoint"] = run.hr_checkpoint_name
    try:
        model = first.model_provider(run)
    except EaselError as exc:  # the provider names the override it was handed; the user wrote hr_checkpoint_name
        if exc.status_code in (404, 422):
            reason = exc.reason if isinstance(exc, UserInputError) else exc.message
            raise UserInputError("hr_checkpoint_name", reason.removeprefix("sd_model_checkpoint: ")) from exc
        raise
    finally:
        if previous is None:
            run.override_settings.pop("sd_model_checkpoint", None)
        else:
            run.override_settings["sd_model_checkpoint"] = previous
    if model is first.model:
        return model, first.conditioner
    conditioner = TextConditioner(model.pipe, clip_skip=run.clip_skip, emphasis=run.opts.emphasis,
                                  embeddings=run.extra_network_data.get("embeddings"))
    return model, conditioner


def _upscale_to(upscaler: Upscaler, image: Image.Image, size: HiresSize) -> Image.Image:
    factor = max(size.upscale_width / image.width, size.upscale_height / image.height)
    image = upscaler.upscale(image, factor)
    if image.size != (size.upscale_width, size.upscale_height):
        image = image.resize((size.upscale_width, size.upscale_height), Image.Resampling.LANCZOS)
    left = (size.upscale_width - size.width) // 2
    top = (size.upscale_height - size.height) // 2
    return image.crop((left, top, left + size.width, top + size.height))


def _centre_crop(latents: torch.Tensor, height: int, width: int) -> torch.Tensor:
    top = (latents.shape[-2] - height) // 2
    left = (latents.shape[-1] - width) // 2
    return latents[..., top:top + height, left:left + width]


def _default_registry() -> UpscalerRegistry:
    from modules.upscalers.service import builtin_upscalers

    registry = UpscalerRegistry()
    for upscaler in builtin_upscalers():
        registry.register(upscaler)
    return registry


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 4)


__all__ = ["LATENT_MODES", "FirstPass", "HiresSize", "annotate", "hires_size", "second_pass", "switches_checkpoint"]
