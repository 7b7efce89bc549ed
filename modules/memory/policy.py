"""The automatic memory policy: which strategies to switch on, from the launch flags and measured free memory.

Thresholds follow SD.Next's VRAM-based defaults, measured rather than guessed: the device's *free* memory at
load time (other processes included) decides. ``--lowvram`` forces sequential offload and ``--medvram`` model
CPU offload, as in A1111. On the CPU nothing is offloaded (there is nowhere to offload to); only SDPA is used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from modules.core.settings import CmdFlags
from modules.devices.select import Device
from modules.memory.strategies import AppliedStrategy, MemoryContext, get_strategy

GIB = 1024 ** 3

# (free memory below, strategies) from the tightest tier up; above the last tier only SDPA is used.
VRAM_TIERS: tuple[tuple[float, tuple[str, ...]], ...] = (
    (4 * GIB, ("sdpa", "sequential_offload", "vae_slicing", "vae_tiling")),
    (8 * GIB, ("sdpa", "model_cpu_offload", "vae_slicing", "vae_tiling")),
    (12 * GIB, ("sdpa", "vae_slicing")),
)


def auto_policy(device_type: str, free_bytes: int, *, lowvram: bool = False, medvram: bool = False) -> list[str]:
    """Strategy names for a device of ``device_type`` with ``free_bytes`` free memory."""
    if lowvram:
        return ["sdpa", "sequential_offload", "vae_slicing", "vae_tiling"]
    if medvram:
        return ["sdpa", "model_cpu_offload", "vae_slicing"]
    if device_type == "cpu":
        return ["sdpa"]
    for limit, names in VRAM_TIERS:
        if free_bytes < limit:
            return list(names)
    return ["sdpa"]


def policy_for_device(device: Device, flags: CmdFlags) -> list[str]:
    """:func:`auto_policy` for a :class:`modules.devices.Device` and the launch flags."""
    memory = device.memory_info()
    return auto_policy(device.device.type, memory.free, lowvram=flags.lowvram, medvram=flags.medvram)


@dataclass
class AppliedPolicy:
    """Strategies in effect on one pipeline, removed in reverse order."""

    applied: list[AppliedStrategy] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [item.name for item in self.applied]

    def remove(self) -> None:
        while self.applied:
            self.applied.pop().remove()


def apply_strategies(pipe: Any, names: Sequence[str] | Iterable[str], device: torch.device,
                     **context: Any) -> AppliedPolicy:
    """Apply ``names`` in order; if one fails, the ones already applied are removed before re-raising."""
    policy = AppliedPolicy()
    ctx = MemoryContext(device=device, **context)
    try:
        for name in names:
            policy.applied.append(get_strategy(name).apply(pipe, ctx))
    except Exception:
        policy.remove()
        raise
    return policy
