"""Timestep schedules and SDXL size conditioning shared by the first pass and the hires second pass."""

from __future__ import annotations

from typing import Any

import torch


def txt2img_timesteps(scheduler: Any, steps: int, device: torch.device) -> tuple[list[torch.Tensor], int]:
    scheduler.set_timesteps(steps, device=device)
    return list(scheduler.timesteps), steps


def img2img_timesteps(scheduler: Any, steps: int, strength: float,
                      device: torch.device) -> tuple[list[torch.Tensor], int]:
    """diffusers' img2img rule: run the last ``steps * strength`` steps of a ``steps``-step schedule."""
    scheduler.set_timesteps(steps, device=device)
    init_timestep = min(int(steps * strength), steps)
    t_start = max(steps - init_timestep, 0)
    order = getattr(scheduler, "order", 1)
    timesteps = list(scheduler.timesteps[t_start * order:])
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * order)
    return timesteps, max(init_timestep, 0)


def sdxl_time_ids(pipe: Any, width: int, height: int, batch: int, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor | None:
    """SDXL's ``add_time_ids`` (original size, crop, target size; or aesthetic score for the refiner); None for
    UNets without size conditioning."""
    if getattr(pipe.unet.config, "addition_embed_type", None) != "text_time":
        return None
    size = (height, width)
    refiner = getattr(pipe.config, "requires_aesthetics_score", False)
    ids = [*size, 0, 0, 6.0] if refiner else [*size, 0, 0, *size]
    return torch.tensor([ids], dtype=dtype, device=device).repeat(batch, 1)
