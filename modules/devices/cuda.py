"""NVIDIA CUDA. ROCm builds of torch also answer ``torch.cuda``; they are :mod:`modules.devices.rocm`'s."""

from __future__ import annotations

import gc

import torch

from modules.devices.base import DeviceBackend, MemoryInfo
from modules.devices.registry import register_backend


class TorchCudaApi(DeviceBackend):
    """What CUDA and ROCm share: both are driven through ``torch.cuda``."""

    torch_type = "cuda"
    auto_half_dtypes = (torch.float16, torch.bfloat16)

    @classmethod
    def is_available(cls) -> bool:
        return False  # the concrete backends decide

    def device_count(self) -> int:
        return int(torch.cuda.device_count())

    def memory_info(self, device: torch.device) -> MemoryInfo:
        free, total = torch.cuda.mem_get_info(device)
        return MemoryInfo.from_free_total(free, total)

    def empty_cache(self) -> None:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()

    def synchronize(self, device: torch.device) -> None:
        torch.cuda.synchronize(device)


@register_backend
class CudaBackend(TorchCudaApi):
    name = "cuda"

    @classmethod
    def is_available(cls) -> bool:
        return torch.version.hip is None and torch.cuda.is_available()
