"""ControlNet inside Easel's denoising loop.

For every denoising pass (txt2img, img2img, a hires second pass) the provider prepares each unit's control map
at the pass's size, and at each step runs the unit's ``ControlNetModel`` on the UNet's own input (the latents
with their CFG copies, the timestep and the text embeddings). The residuals are scaled by the unit's weight
and control mode and summed over units (multi-ControlNet), then handed to the UNet through
``DenoiseRequest.unet_kwargs``. A unit is active only while ``guidance_start <= step/steps <= guidance_end``;
a unit with weight 0 is not run at all, so it leaves the picture exactly as without it.

Control modes:
- "Balanced": every residual times ``weight``;
- "My prompt is more important": deeper residuals keep more of ``weight`` than shallow ones (each level is
  0.825 times the next deeper one), so the prompt shapes the fine detail;
- "ControlNet is more important": the control applies to the conditional copies only; classifier-free guidance
  then amplifies it, as the difference between the guided and the unguided prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules.controlnet.models import ControlNetCatalog
from modules.controlnet.preprocessors import PreprocessorRegistry, run_preprocessor
from modules.controlnet.units import ControlNetUnit
from modules.processing.unet_extras import DenoisePass, UnetKwargs

SOFT_INJECTION_BASE = 0.825


@dataclass
class PreparedUnit:
    """A validated unit with its source picture; control maps are cached per pass size."""

    index: int
    unit: ControlNetUnit
    source: Image.Image
    _maps: dict[tuple[int, int], Image.Image] = field(default_factory=dict)

    def control_map(self, registry: PreprocessorRegistry, size: tuple[int, int],
                    pixel_size: tuple[int, int]) -> Image.Image:
        cached = self._maps.get(size)
        if cached is None:
            from modules.processing.processor import resize_image

            unit = self.unit
            resolution = pixel_perfect_resolution(self.source.size, pixel_size, unit.resize_index) \
                if unit.pixel_perfect else unit.resolution
            detected = run_preprocessor(registry, unit.module, self.source, resolution=resolution,
                                        threshold_a=unit.threshold_a, threshold_b=unit.threshold_b,
                                        field_name=f"controlnet[{self.index}].module")
            cached = resize_image(detected, size[0], size[1], unit.resize_index)
            self._maps[size] = cached
        return cached


def pixel_perfect_resolution(source: tuple[int, int], target: tuple[int, int], resize_index: int) -> int:
    """The preprocessor resolution at which the control map needs no resampling to fill ``target``."""
    ratio_w, ratio_h = target[0] / source[0], target[1] / source[1]
    ratio = min(ratio_w, ratio_h) if resize_index == 2 else max(ratio_w, ratio_h)
    return max(64, int(round(ratio * min(source))))


def residual_weights(unit: ControlNetUnit, count: int) -> list[float]:
    if unit.control_mode == "My prompt is more important":
        return [unit.weight * SOFT_INJECTION_BASE ** (count - 1 - level) for level in range(count)]
    return [unit.weight] * count


def to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None]


class ControlNetProvider:
    """The per-run ``unet_kwargs`` provider holding the run's units."""

    is_controlnet = True

    def __init__(self, units: list[PreparedUnit], catalog: ControlNetCatalog, registry: PreprocessorRegistry):
        self.units = units
        self.catalog = catalog
        self.registry = registry

    def __call__(self, denoise_pass: DenoisePass) -> UnetKwargs | None:
        active = [unit for unit in self.units if unit.unit.weight > 0]
        if not active:
            return None
        unet = denoise_pass.pipe.unet
        device, dtype = unet.device, unet.dtype
        latent_scale = denoise_pass.pipe.vae_scale_factor
        prepared = []
        for item in active:
            model = self.catalog.load(item.unit.model, unet, f"controlnet[{item.index}].model").to(device, dtype)
            factor = 2 ** (len(model.config.conditioning_embedding_out_channels) - 1)
            size = (denoise_pass.width // latent_scale * factor, denoise_pass.height // latent_scale * factor)
            control = item.control_map(self.registry, size, (denoise_pass.width, denoise_pass.height))
            prepared.append((item.unit, model, to_tensor(control).to(device, dtype)))
        timesteps = list(denoise_pass.timesteps)
        steps = max(1, len(timesteps))
        batch, guidance = denoise_pass.batch_size, denoise_pass.guidance

        def unet_kwargs(step: int, latent_input: torch.Tensor, embeds: torch.Tensor) -> dict[str, Any]:
            progress = step / steps
            down_total: list[torch.Tensor] | None = None
            mid_total: torch.Tensor | None = None
            for unit, model, control in prepared:
                if progress < unit.guidance_start or progress > unit.guidance_end:
                    continue
                sample = latent_input[:, : model.config.in_channels]
                down, mid = model(sample, timesteps[step], encoder_hidden_states=embeds,
                                  controlnet_cond=control.expand(sample.shape[0], -1, -1, -1),
                                  conditioning_scale=1.0, return_dict=False)
                weights = residual_weights(unit, len(down) + 1)
                scaled = [residual * weight for residual, weight in zip([*down, mid], weights, strict=True)]
                if unit.control_mode == "ControlNet is more important" and guidance:
                    keep = torch.ones(sample.shape[0], 1, 1, 1, device=device, dtype=dtype)
                    keep[:batch] = 0  # the first copy is the unconditional one
                    scaled = [residual * keep for residual in scaled]
                if down_total is None or mid_total is None:
                    down_total, mid_total = scaled[:-1], scaled[-1]
                else:
                    down_total = [a + b for a, b in zip(down_total, scaled[:-1], strict=True)]
                    mid_total = mid_total + scaled[-1]
            if down_total is None:
                return {}
            return {"down_block_additional_residuals": tuple(down_total), "mid_block_additional_residual": mid_total}

        return unet_kwargs
