"""The CPU: always available, fp32 by default (half precision on most CPUs is slower, not faster)."""

from __future__ import annotations

import torch

from modules.devices.base import DeviceBackend, MemoryInfo, system_memory
from modules.devices.registry import register_backend


@register_backend
class CpuBackend(DeviceBackend):
    name = "cpu"
    torch_type = "cpu"

    @classmethod
    def is_available(cls) -> bool:
        return True

    def torch_device(self, index: int | None = None) -> torch.device:
        return torch.device("cpu")  # one logical device; an index would only confuse torch

    def memory_info(self, device: torch.device) -> MemoryInfo:
        return system_memory()
