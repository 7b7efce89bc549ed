"""Latent upscale modes for hires fix: interpolate the first pass's latents before the second pass.

The names are A1111's ``latent-upscale-modes`` list; each maps to a ``torch.nn.functional.interpolate`` mode
and its antialias flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LatentMode:
    name: str
    mode: str
    antialias: bool = False


LATENT_MODES: dict[str, LatentMode] = {
    mode.name: mode
    for mode in (
        LatentMode("Latent", "bilinear"),
        LatentMode("Latent (antialiased)", "bilinear", True),
        LatentMode("Latent (bicubic)", "bicubic"),
        LatentMode("Latent (bicubic antialiased)", "bicubic", True),
        LatentMode("Latent (nearest)", "nearest"),
        LatentMode("Latent (nearest-exact)", "nearest-exact"),
    )
}
DEFAULT_LATENT_MODE = "Latent"


def is_latent_mode(name: str | None) -> bool:
    return name is None or name in LATENT_MODES


def upscale_latents(latents: torch.Tensor, size: tuple[int, int], mode_name: str | None) -> torch.Tensor:
    """Resize ``(batch, channels, h, w)`` latents to ``size = (h, w)`` with the named mode."""
    mode = LATENT_MODES[mode_name or DEFAULT_LATENT_MODE]
    if tuple(latents.shape[-2:]) == tuple(size):
        return latents
    dtype = latents.dtype
    # interpolate has no half-precision kernels for some modes on CPU; compute in fp32 and cast back.
    if mode.mode in ("bilinear", "bicubic"):
        resized = F.interpolate(latents.float(), size=size, mode=mode.mode, align_corners=False,
                                antialias=mode.antialias)
    else:
        resized = F.interpolate(latents.float(), size=size, mode=mode.mode)
    return resized.to(dtype)
