"""Control units inside Easel's denoising loop: ControlNets, T2I-Adapters and IP-Adapters.

For every denoising pass (txt2img, img2img, a hires second pass) the provider prepares each unit at the pass's
size and returns the callback the engine calls at every step (``DenoiseRequest.unet_kwargs``):

- ControlNet: the unit's ``ControlNetModel`` runs on the UNet's own input (the latents with their CFG copies,
  the timestep, the text embeddings and, for SDXL-type models, the same pooled-text/size ``added_cond_kwargs``);
  its down/mid residuals go to the UNet.
- T2I-Adapter: the adapter runs once per pass on the control map; its feature maps are added inside the UNet's
  down blocks (``down_intrablock_additional_residuals``), the same for every CFG copy as in diffusers.
- IP-Adapter: diffusers' ``load_ip_adapter`` patches the UNet's cross-attention for the run (undone by
  :meth:`ControlNetProvider.close`); the image embeddings go in as ``added_cond_kwargs["image_embeds"]`` and the
  unit's weight is the adapter scale.

Residuals are scaled by the unit's weight and control mode and summed over units (multi-ControlNet). A unit acts
on the steps whose start lies in ``[guidance_start, guidance_end]`` (both ends included, as sd-webui-controlnet
counts them: end 0.5 over 20 steps acts on 11 steps; end 0 still acts on the first step).
A unit with weight 0 is not run at all (nor an IP-Adapter loaded), so it leaves the picture exactly as
without it.

Control modes (ControlNet and T2I-Adapter units):
- "Balanced": every residual times ``weight``;
- "My prompt is more important": deeper residuals keep more of ``weight`` than shallow ones (each level is
  0.825 times the next deeper one), so the prompt shapes the fine detail;
- "ControlNet is more important": the control applies to the conditional copies only; classifier-free guidance
  then amplifies it, as the difference between the guided and the unguided prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules.controlnet.ip_adapter import ImageEncoderCache, IPAdapterPatch, check_ip_adapter_fits
from modules.controlnet.models import CONTROLNET, IP_ADAPTER, T2I_ADAPTER, ControlNetCatalog, check_controlnet_fits
from modules.controlnet.preprocessors import PreprocessorRegistry, run_preprocessor
from modules.controlnet.t2i_adapter import check_adapter_fits, control_size
from modules.controlnet.units import ControlNetUnit
from modules.processing.run import DenoisePass, UnetKwargs
from modules.processing.unet_extras import add_residuals

SOFT_INJECTION_BASE = 0.825
STRONG_CONTROL = "ControlNet is more important"

UnitStep = Callable[[int, torch.Tensor, torch.Tensor, dict[str, Any] | None], dict[str, Any]]
"""One unit's UNet inputs at one step: ``(step, latent_input, embeds, added_cond_kwargs) -> kwargs``."""
IPAdapterStep = Callable[[int, torch.Tensor, dict[str, Any] | None], dict[str, Any]]
"""The IP-Adapters' ``added_cond_kwargs`` at one step: ``(step, latent_input, added_cond_kwargs) -> added``."""


@dataclass
class PreparedUnit:
    """A validated unit with its source picture and kind; control maps are cached per pass size."""

    index: int
    unit: ControlNetUnit
    source: Image.Image
    kind: str = CONTROLNET
    field_prefix: str = "controlnet"
    _maps: dict[tuple[int, int], Image.Image] = field(default_factory=dict)

    def field(self, name: str) -> str:
        """The request field of this unit's ``name`` (errors name it, e.g. ``...args[1].model``)."""
        return f"{self.field_prefix}[{self.index}].{name}"

    def control_map(self, registry: PreprocessorRegistry, size: tuple[int, int],
                    pixel_size: tuple[int, int]) -> Image.Image:
        cached = self._maps.get(size)
        if cached is None:
            from modules.processing.processor import resize_image

            cached = resize_image(self.detected(registry, pixel_size), size[0], size[1], self.unit.resize_index)
            self._maps[size] = cached
        return cached

    def detected(self, registry: PreprocessorRegistry, pixel_size: tuple[int, int]) -> Image.Image:
        """The preprocessor's output at the unit's resolution (pixel perfect: the one that fills ``pixel_size``)."""
        unit = self.unit
        resolution = pixel_perfect_resolution(self.source.size, pixel_size, unit.resize_index) \
            if unit.pixel_perfect else unit.resolution
        return run_preprocessor(registry, unit.module, self.source, resolution=resolution,
                                threshold_a=unit.threshold_a, threshold_b=unit.threshold_b,
                                field_name=self.field("module"))


def pixel_perfect_resolution(source: tuple[int, int], target: tuple[int, int], resize_index: int) -> int:
    """The preprocessor resolution at which the control map needs no resampling to fill ``target``."""
    ratio_w, ratio_h = target[0] / source[0], target[1] / source[1]
    ratio = min(ratio_w, ratio_h) if resize_index == 2 else max(ratio_w, ratio_h)
    return max(64, int(round(ratio * min(source))))


def residual_weights(unit: ControlNetUnit, count: int) -> list[float]:
    if unit.control_mode == "My prompt is more important":
        return [unit.weight * SOFT_INJECTION_BASE ** (count - 1 - level) for level in range(count)]
    return [unit.weight] * count


def is_active(unit: ControlNetUnit, step: int, steps: int) -> bool:
    """Whether the unit acts at ``step`` of ``steps``: the step starts inside ``[guidance_start, guidance_end]``."""
    progress = step / steps
    return unit.guidance_start <= progress <= unit.guidance_end


def to_tensor(image: Image.Image, channels: int = 3) -> torch.Tensor:
    """(1, channels, h, w) in 0..1; one channel is the grey level (sketch T2I-Adapters)."""
    array = np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def _uncond_free(residuals: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """"ControlNet is more important": zero the unconditional copies (the first ``batch`` rows)."""
    keep = torch.ones(residuals[0].shape[0], 1, 1, 1, device=residuals[0].device, dtype=residuals[0].dtype)
    keep[:batch] = 0
    return [residual * keep for residual in residuals]


class ControlNetProvider:
    """The per-run ``unet_kwargs`` provider holding the run's units; :meth:`close` undoes IP-Adapter patches."""

    def __init__(self, units: list[PreparedUnit], catalog: ControlNetCatalog, registry: PreprocessorRegistry,
                 encoders: ImageEncoderCache | None = None) -> None:
        self.units = units
        self.catalog = catalog
        self.registry = registry
        self.encoders = encoders or ImageEncoderCache()
        self._ip_patches: dict[int, IPAdapterPatch] = {}  # id(pipe) -> the patch on that pipeline's UNet

    def __call__(self, denoise_pass: DenoisePass) -> UnetKwargs | None:
        active = [item for item in self.units if item.unit.weight > 0]
        if not active:
            return None
        steps = [UNIT_STEPS[item.kind](self, item, denoise_pass) for item in active if item.kind in UNIT_STEPS]
        ip_units = [item for item in active if item.kind == IP_ADAPTER]
        ip_step = self._ip_adapter_step(ip_units, denoise_pass) if ip_units else None

        def unet_kwargs(step: int, latent_input: torch.Tensor, embeds: torch.Tensor,
                        added: dict[str, Any] | None) -> dict[str, Any]:
            merged: dict[str, Any] = {}
            for unit_step in steps:
                for key, value in unit_step(step, latent_input, embeds, added).items():
                    merged[key] = value if key not in merged else add_residuals(merged[key], value)
            if ip_step is not None:
                merged["added_cond_kwargs"] = ip_step(step, latent_input, added)
            return merged

        return unet_kwargs

    def close(self) -> None:
        """Restore every pipeline an IP-Adapter was loaded into (the run's finalizer calls this)."""
        patches, self._ip_patches = list(self._ip_patches.values()), {}
        for patch in reversed(patches):
            patch.restore()

    # -- IP-Adapter -------------------------------------------------------------------------------------------
    def _ip_adapter_step(self, items: list[PreparedUnit], denoise_pass: DenoisePass) -> IPAdapterStep:
        pipe = denoise_pass.pipe
        unet = pipe.unet
        files = [self.catalog.find(item.unit.model, item.field("model")) for item in items]
        for item, file in zip(items, files, strict=True):
            check_ip_adapter_fits(file, unet, item.field("model"))
        patch = self._ip_patches.get(id(pipe))
        if patch is None:
            patch = self._ip_patches[id(pipe)] = IPAdapterPatch(pipe, files)
        device, dtype = unet.device, unet.dtype
        pixel_size = (denoise_pass.width, denoise_pass.height)
        embeds = [self.encoders.get(file.image_encoder).embeds(item.detected(self.registry, pixel_size), plus,
                                                                device, dtype)
                  for item, file, plus in zip(items, files, patch.plus, strict=True)]
        steps = max(1, len(denoise_pass.timesteps))
        batch, guidance = denoise_pass.batch_size, denoise_pass.guidance
        scales: list[float] = []
        rows_cache: dict[int, list[torch.Tensor]] = {}

        def step(index: int, latent_input: torch.Tensor, added: dict[str, Any] | None) -> dict[str, Any]:
            wanted = [item.unit.weight if is_active(item.unit, index, steps) else 0.0 for item in items]
            if wanted != scales:
                patch.set_scales(wanted)
                scales[:] = wanted
            rows = latent_input.shape[0]
            image_embeds = rows_cache.get(rows)
            if image_embeds is None:
                image_embeds = rows_cache[rows] = [_embed_rows(cond, uncond, rows, batch if guidance else 0)
                                                   for cond, uncond in embeds]
            return {**(added or {}), "image_embeds": image_embeds}

        return step


def _embed_rows(cond: torch.Tensor, uncond: torch.Tensor, rows: int, uncond_rows: int) -> torch.Tensor:
    """One adapter's embeddings for every UNet row: the unconditional copies first, as the engine lays them out."""
    return torch.cat([uncond[None]] * uncond_rows + [cond[None]] * (rows - uncond_rows))


# -- residual units ----------------------------------------------------------------------------------------------
def _controlnet_step(provider: ControlNetProvider, item: PreparedUnit, denoise_pass: DenoisePass) -> UnitStep:
    unit, unet = item.unit, denoise_pass.pipe.unet
    device, dtype = unet.device, unet.dtype
    model = provider.catalog.load(unit.model, unet, item.field("model"))
    check_controlnet_fits(model, unet, unit.model, item.field("model"))
    model = model.to(device, dtype)
    latent_scale = denoise_pass.pipe.vae_scale_factor
    factor = 2 ** (len(model.config.conditioning_embedding_out_channels) - 1)
    size = (denoise_pass.width // latent_scale * factor, denoise_pass.height // latent_scale * factor)
    control = item.control_map(provider.registry, size, (denoise_pass.width, denoise_pass.height))
    control_tensor = to_tensor(control).to(device, dtype)
    timesteps = list(denoise_pass.timesteps)
    steps = max(1, len(timesteps))
    batch, guidance = denoise_pass.batch_size, denoise_pass.guidance

    def step(index: int, latent_input: torch.Tensor, embeds: torch.Tensor,
             added: dict[str, Any] | None) -> dict[str, Any]:
        if not is_active(unit, index, steps):
            return {}
        sample = latent_input[:, : model.config.in_channels]
        down, mid = model(sample, timesteps[index], encoder_hidden_states=embeds,
                          controlnet_cond=control_tensor.expand(sample.shape[0], -1, -1, -1),
                          conditioning_scale=1.0, added_cond_kwargs=added, return_dict=False)
        weights = residual_weights(unit, len(down) + 1)
        scaled = [residual * weight for residual, weight in zip([*down, mid], weights, strict=True)]
        if unit.control_mode == STRONG_CONTROL and guidance:
            scaled = _uncond_free(scaled, batch)
        return {"down_block_additional_residuals": tuple(scaled[:-1]), "mid_block_additional_residual": scaled[-1]}

    return step


def _t2i_adapter_step(provider: ControlNetProvider, item: PreparedUnit, denoise_pass: DenoisePass) -> UnitStep:
    unit, pipe = item.unit, denoise_pass.pipe
    unet = pipe.unet
    device, dtype = unet.device, unet.dtype
    latent_scale = pipe.vae_scale_factor
    adapter = provider.catalog.load(unit.model, unet, item.field("model"))
    check_adapter_fits(adapter, unet, latent_scale, unit.model, item.field("model"))
    adapter = adapter.to(device, dtype)
    size = control_size(adapter, denoise_pass.width, denoise_pass.height, latent_scale)
    control = item.control_map(provider.registry, size, (denoise_pass.width, denoise_pass.height))
    features = adapter(to_tensor(control, adapter.config.in_channels).to(device, dtype))
    scaled = [feature * weight for feature, weight in zip(features, residual_weights(unit, len(features)),
                                                          strict=True)]
    steps = max(1, len(denoise_pass.timesteps))
    batch, guidance = denoise_pass.batch_size, denoise_pass.guidance

    def step(index: int, latent_input: torch.Tensor, embeds: torch.Tensor,
             added: dict[str, Any] | None) -> dict[str, Any]:
        if not is_active(unit, index, steps):
            return {}
        rows = latent_input.shape[0]
        residuals = [feature.expand(rows, -1, -1, -1) for feature in scaled]
        if unit.control_mode == STRONG_CONTROL and guidance:
            residuals = _uncond_free(residuals, batch)
        return {"down_intrablock_additional_residuals": residuals}  # a fresh list: the UNet pops from it

    return step


UNIT_STEPS: dict[str, Callable[[ControlNetProvider, PreparedUnit, DenoisePass], UnitStep]] = {
    CONTROLNET: _controlnet_step,
    T2I_ADAPTER: _t2i_adapter_step,
}
"""Kind -> per-pass preparation of the units whose residuals are summed (IP-Adapters patch attention instead)."""
