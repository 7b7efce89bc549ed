"""Intel GPUs through ``torch.xpu`` (built into torch since 2.4; no IPEX needed)."""

from __future__ import annotations

import gc

import torch

from modules.devices.base import DeviceBackend, MemoryInfo
from modules.devices.registry import register_backend


@register_backend
class XpuBackend(DeviceBackend):
    name = "xpu"
    torch_type = "xpu"
    # Intel's matrix engines are built around bf16; fp16 is the fallback.
    auto_half_dtypes = (torch.bfloat16, torch.float16)

    @classmethod
    def is_available(cls) -> bool:
        xpu = getattr(torch, "xpu", None)
        return xpu is not None and bool(xpu.is_available())

    def device_count(self) -> int:
        return int(torch.xpu.device_count())

    def memory_info(self, device: torch.device) -> MemoryInfo:
        if hasattr(torch.xpu, "mem_get_info"):
            free, total = torch.xpu.mem_get_info(device)
            return MemoryInfo.from_free_total(free, total)
        total = int(torch.xpu.get_device_properties(device).total_memory)
        return MemoryInfo.from_free_total(total - int(torch.xpu.memory_reserved(device)), total)

    def empty_cache(self) -> None:
        gc.collect()
        torch.xpu.empty_cache()

    def synchronize(self, device: torch.device) -> None:
        torch.xpu.synchronize(device)
