"""Apple Silicon through Metal (MPS). Memory is unified with the host, so free memory is the host's."""

from __future__ import annotations

import gc

import torch

from modules.devices.base import DeviceBackend, MemoryInfo, system_memory
from modules.devices.registry import register_backend


@register_backend
class MpsBackend(DeviceBackend):
    name = "mps"
    torch_type = "mps"
    auto_half_dtypes = (torch.float16,)

    @classmethod
    def is_available(cls) -> bool:
        return bool(torch.backends.mps.is_available())

    def torch_device(self, index: int | None = None) -> torch.device:
        return torch.device("mps")

    def memory_info(self, device: torch.device) -> MemoryInfo:
        host = system_memory()
        total = int(torch.mps.recommended_max_memory()) or host.total
        used = int(torch.mps.driver_allocated_memory())
        free = max(0, min(total - used, host.free))
        return MemoryInfo(free=free, total=total, used=used)

    def empty_cache(self) -> None:
        gc.collect()
        torch.mps.empty_cache()

    def synchronize(self, device: torch.device) -> None:
        torch.mps.synchronize()
