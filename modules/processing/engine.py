"""The denoising loop, over a diffusers pipeline's components.

Why Easel runs its own loop instead of calling ``pipe(...)``: A1111 features need control *inside* the loop -
prompt editing that changes the conditioning at a given step, composable ``AND`` prompts with weights, the CFG
callbacks extension scripts rely on (``on_cfg_denoiser``/``denoised``/``after_cfg``), interrupt and skip within
one step, live previews, and A1111-style inpainting with any model. The loop is written to perform exactly the
operations of diffusers' ``StableDiffusionPipeline.__call__`` in the same order (scale input, UNet, CFG,
``scheduler.step``, VAE decode, postprocess), so a plain txt2img is pixel-identical to ``pipe()`` - a test
guards that. Everything else (components, schedulers, VAE, image processing) is diffusers'.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from modules.core import cancellation
from modules.core.errors import JobCancelled

log = logging.getLogger(__name__)


@dataclass
class Conditioning:
    """Text conditioning of one batch: hidden states, and for SDXL-type UNets the pooled embedding."""

    embeds: torch.Tensor  # (batch, tokens, dim)
    pooled: torch.Tensor | None = None  # (batch, dim) for SDXL


CondSchedule = Callable[[int], Conditioning]
"""Conditioning as a function of the sampling step (prompt editing and alternation change it mid-run)."""


@dataclass
class DenoiseState:
    """What the CFG hooks see and may change at one step (mirrors A1111's CFGDenoiserParams fields)."""

    step: int
    total_steps: int
    timestep: torch.Tensor
    latents: torch.Tensor
    latent_input: torch.Tensor
    cond: list[torch.Tensor]
    uncond: torch.Tensor | None
    noise_pred: torch.Tensor | None = None
    noise_pred_uncond: torch.Tensor | None = None
    noise_pred_conds: list[torch.Tensor] = field(default_factory=list)


class DenoiseHooks(Protocol):
    def before_unet(self, state: DenoiseState) -> None: ...

    def after_unet(self, state: DenoiseState) -> None: ...

    def after_cfg(self, state: DenoiseState) -> None: ...


@dataclass
class StepControl:
    """How the loop reports progress and learns about cancel/skip; supplied by the job runner."""

    on_step: Callable[[int, int, torch.Tensor], None] = lambda step, total, latents: None
    should_stop: Callable[[], bool] = lambda: False
    consume_skip: Callable[[], bool] = lambda: False


class Interrupted(JobCancelled):
    """The job was interrupted (or cancelled) mid-denoise; carries the latents reached so far."""

    def __init__(self, latents: torch.Tensor) -> None:
        super().__init__("interrupted")
        self.latents = latents


class SkipImage(Exception):
    """The user asked to skip the current batch; the loop stops and the batch is dropped."""


@dataclass
class InpaintSetup:
    """Masked denoising. ``mask`` is 1 where new content goes, at latent resolution (batch, 1, h, w)."""

    mask: torch.Tensor
    init_latents: torch.Tensor  # clean latents of the init image
    noise: torch.Tensor  # the noise used to noise init_latents at each step
    masked_image_latents: torch.Tensor | None = None  # for 9-channel inpainting UNets


@dataclass
class DenoiseRequest:
    latents: torch.Tensor
    timesteps: Sequence[torch.Tensor]
    uncond: CondSchedule | None
    conds: list[tuple[CondSchedule, float]]
    cfg_scale: float
    generators: list[torch.Generator]
    eta: float | None = None
    added_time_ids: torch.Tensor | None = None  # SDXL size/crop conditioning, (batch, 6)
    inpaint: InpaintSetup | None = None
    # ControlNet/adapter inputs: (step, latent_input, embeds, added_cond_kwargs) -> extra UNet kwargs, which may
    # replace added_cond_kwargs (IP-Adapter image embeds)
    unet_kwargs: Callable[[int, torch.Tensor, torch.Tensor, dict[str, Any] | None], dict[str, Any]] | None = None
    hooks: Sequence[DenoiseHooks] = ()
    control: StepControl = field(default_factory=StepControl)
    steps_for_report: int | None = None


def do_cfg(unet: Any, cfg_scale: float) -> bool:
    """diffusers' rule: classifier-free guidance runs when the scale exceeds 1 and the UNet is not distilled."""
    return cfg_scale > 1.0 and getattr(unet.config, "time_cond_proj_dim", None) is None


def extra_step_kwargs(scheduler: Any, generators: list[torch.Generator], eta: float | None) -> dict[str, Any]:
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs: dict[str, Any] = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0 if eta is None else eta
    if "generator" in accepted:
        kwargs["generator"] = generators[0] if len(generators) == 1 else generators
    return kwargs


def denoise(unet: Any, scheduler: Any, request: DenoiseRequest) -> torch.Tensor:
    """Run the sampler over ``request.timesteps`` and return the final latents.

    Under ``no_grad`` (the caller's), not ``inference_mode``: offloading hooks (accelerate's sequential offload,
    diffusers' group offload) and extensions move or create weights inside the UNet's forward, and weights made
    in inference mode cannot become parameters again outside it.
    """
    latents = request.latents
    guidance = do_cfg(unet, request.cfg_scale)
    step_kwargs = extra_step_kwargs(scheduler, request.generators, request.eta)
    timesteps = list(request.timesteps)
    order = getattr(scheduler, "order", 1)
    total = request.steps_for_report or max(1, len(timesteps) // order)
    batch = latents.shape[0]
    inpaint = request.inpaint
    last_key: tuple[int, ...] | None = None
    embeds: torch.Tensor | None = None
    added: dict[str, torch.Tensor] | None = None
    cond_parts: list[torch.Tensor] = []
    uncond_part: Conditioning | None = None
    weights = [weight for _, weight in request.conds]
    for index, t in enumerate(timesteps):
        if request.control.should_stop():
            raise Interrupted(latents)
        if request.control.consume_skip():
            raise SkipImage()
        sampling_step = index // order
        key, parts = _conditioning_at(request, sampling_step, guidance)
        if key != last_key:
            uncond_part = parts[0] if guidance else None
            cond_parts = [part.embeds for part in (parts[1:] if guidance else parts)]
            embeds = torch.cat([part.embeds for part in parts]) if len(parts) > 1 else parts[0].embeds
            added = _added_cond_kwargs(parts, request.added_time_ids, guidance)
            last_key = key
        assert embeds is not None
        copies = len(cond_parts) + (1 if guidance else 0)
        latent_input = torch.cat([latents] * copies) if copies > 1 else latents
        latent_input = scheduler.scale_model_input(latent_input, t)
        if inpaint is not None and inpaint.masked_image_latents is not None:
            extra = torch.cat([inpaint.mask, inpaint.masked_image_latents], dim=1)
            latent_input = torch.cat([latent_input, torch.cat([extra] * copies)], dim=1)
        state = DenoiseState(sampling_step, total, t, latents, latent_input, list(cond_parts),
                             uncond_part.embeds if uncond_part is not None else None)
        for hook in request.hooks:
            hook.before_unet(state)
        replaced = len(state.cond) != len(cond_parts) or any(a is not b for a, b in zip(state.cond, cond_parts))
        if replaced or (uncond_part is not None and state.uncond is not uncond_part.embeds):
            # a CFG hook replaced the text conditioning for this step (A1111 on_cfg_denoiser semantics)
            embeds = torch.cat(([state.uncond] if state.uncond is not None else []) + list(state.cond))
        unet_extra = request.unet_kwargs(index, state.latent_input, embeds, added) if request.unet_kwargs else {}
        step_added = unet_extra.pop("added_cond_kwargs", added)
        noise_pred = unet(state.latent_input, t, encoder_hidden_states=embeds, timestep_cond=None,
                          cross_attention_kwargs=None, added_cond_kwargs=step_added, return_dict=False, **unet_extra)[0]
        state.noise_pred = noise_pred
        for hook in request.hooks:
            hook.after_unet(state)
        noise_pred = state.noise_pred
        if guidance:
            chunks = noise_pred.chunk(copies)
            noise_uncond, noise_conds = chunks[0], list(chunks[1:])
            if len(noise_conds) == 1 and weights[0] == 1.0:
                noise_pred = noise_uncond + request.cfg_scale * (noise_conds[0] - noise_uncond)
            else:
                noise_pred = noise_uncond + sum(
                    request.cfg_scale * weight * (cond - noise_uncond) for cond, weight in zip(noise_conds, weights))
            state.noise_pred_uncond, state.noise_pred_conds = noise_uncond, noise_conds
        elif len(cond_parts) > 1:
            chunks = noise_pred.chunk(len(cond_parts))
            noise_pred = sum(weight * chunk for chunk, weight in zip(chunks, weights)) / sum(weights)
        state.noise_pred = noise_pred
        for hook in request.hooks:
            hook.after_cfg(state)
        latents = scheduler.step(state.noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
        if inpaint is not None and inpaint.masked_image_latents is None:
            latents = _blend_known_region(scheduler, inpaint, latents, timesteps, index)
        if index == len(timesteps) - 1 or (index + 1) % order == 0:
            request.control.on_step(min(total, (index + 1) // order or 1), total, latents)
    del batch
    return latents


def _conditioning_at(request: DenoiseRequest, step: int, guidance: bool) -> tuple[tuple[int, ...], list[Conditioning]]:
    parts: list[Conditioning] = []
    if guidance and request.uncond is not None:
        parts.append(request.uncond(step))
    parts.extend(schedule(step) for schedule, _ in request.conds)
    key = tuple(id(part.embeds) for part in parts)
    longest = max(part.embeds.shape[1] for part in parts)
    if any(part.embeds.shape[1] != longest for part in parts):
        parts = [Conditioning(pad_token_length(part.embeds, longest), part.pooled) for part in parts]
    return key, parts


def pad_token_length(embeds: torch.Tensor, length: int) -> torch.Tensor:
    """Repeat the last 77-token chunk until ``length`` (A1111 pads the shorter of two prompts with empty chunks)."""
    if embeds.shape[1] >= length:
        return embeds
    chunk = embeds[:, -77:]
    repeats = -(-(length - embeds.shape[1]) // chunk.shape[1])
    return torch.cat([embeds, *([chunk] * repeats)], dim=1)[:, :length]


def _added_cond_kwargs(parts: list[Conditioning], time_ids: torch.Tensor | None,
                       guidance: bool) -> dict[str, torch.Tensor] | None:
    if parts[0].pooled is None:
        return None
    pooled = torch.cat([part.pooled for part in parts if part.pooled is not None])
    assert time_ids is not None, "SDXL-type UNets need size/crop time ids"
    return {"text_embeds": pooled, "time_ids": torch.cat([time_ids] * len(parts))}


def _blend_known_region(scheduler: Any, inpaint: InpaintSetup, latents: torch.Tensor,
                        timesteps: Sequence[torch.Tensor], index: int) -> torch.Tensor:
    """Keep the unmasked region on the init image's trajectory (diffusers' 4-channel inpainting rule)."""
    known = inpaint.init_latents
    if index < len(timesteps) - 1:
        next_t = timesteps[index + 1]
        known = scheduler.add_noise(known, inpaint.noise, torch.tensor([next_t]))
    return (1 - inpaint.mask) * known + inpaint.mask * latents


VAE_TILE_ABOVE_PIXELS = 1536 * 1536
"""Images larger than this (in pixels) are VAE-encoded/decoded in diffusers' overlapping tiles: memory is bounded
by the tile, and one tile is the unit of work between two stop checks. Smaller ones take diffusers' exact path."""


@contextmanager
def vae_work_units(vae: Any, pixels: int) -> Iterator[None]:
    """For one VAE call: a stop check before every encoder/decoder block (a cancel reaches the inside of a long
    encode or decode within one block of one tile) and tiling above :data:`VAE_TILE_ABOVE_PIXELS`. Undone on exit.
    """
    handles: list[Any] = []
    if cancellation.bound():
        for part in (getattr(vae, "encoder", None), getattr(vae, "decoder", None)):
            if not isinstance(part, torch.nn.Module):
                continue
            blocks = [*getattr(part, "down_blocks", ()), *getattr(part, "up_blocks", ()),
                      getattr(part, "mid_block", None)]
            handles.extend(block.register_forward_pre_hook(_stop_check) for block in blocks
                           if isinstance(block, torch.nn.Module))
    tiled = (pixels > VAE_TILE_ABOVE_PIXELS and callable(getattr(vae, "enable_tiling", None))
             and getattr(vae, "use_tiling", None) is False)
    if tiled:
        vae.enable_tiling()
    try:
        yield
    finally:
        if tiled:
            vae.disable_tiling()
        for handle in handles:
            handle.remove()


def _stop_check(module: Any, args: Any) -> None:
    cancellation.checkpoint()


def decode_latents(vae: Any, image_processor: Any, latents: torch.Tensor,
                   generator: torch.Generator | list[torch.Generator] | None = None) -> list[Any]:
    """VAE-decode latents to PIL images exactly as diffusers' pipelines do (with an fp32 retry on NaNs)."""
    scale = 2 ** (len(getattr(vae.config, "block_out_channels", (0, 0, 0, 0))) - 1)
    pixels = latents.shape[-1] * latents.shape[-2] * scale * scale
    with vae_work_units(vae, pixels):
        decoded = _vae_decode(vae, latents, generator)
        if torch.isnan(decoded).any() and vae.dtype != torch.float32:
            # A1111's rule (auto_vae_precision): a VAE that overflowed in half precision is retried in fp32 and
            # stays there, so later images do not pay for a failed half-precision decode first (SDXL's VAE
            # overflows in fp16 on every image). A VAE loaded afterwards starts in half precision again.
            log.warning("the VAE produced NaNs in %s; it now runs in fp32 (--no-half-vae starts it there)",
                        str(vae.dtype).removeprefix("torch."))
            vae.to(torch.float32)
            decoded = _vae_decode(vae, latents.to(torch.float32), generator)
    return image_processor.postprocess(decoded, output_type="pil", do_denormalize=[True] * decoded.shape[0])


def _vae_decode(vae: Any, latents: torch.Tensor, generator: Any) -> torch.Tensor:
    # in the wider of the two precisions: half-precision latents into an fp32 VAE are widened before the scaling
    scaled = latents.to(torch.promote_types(latents.dtype, vae.dtype)) / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        scaled = scaled + shift
    return vae.decode(scaled.to(vae.dtype), return_dict=False, generator=generator)[0]


def encode_images(vae: Any, pixels: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """VAE-encode preprocessed pixels (batch, 3, h, w in -1..1) to scaled latents, sampling per image."""
    latents = []
    with vae_work_units(vae, pixels.shape[-1] * pixels.shape[-2]):
        for index in range(pixels.shape[0]):
            dist = vae.encode(pixels[index:index + 1].to(vae.dtype)).latent_dist
            latents.append(dist.sample(generators[index % len(generators)]))
    result = torch.cat(latents)
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        result = result - shift
    return result * vae.config.scaling_factor
