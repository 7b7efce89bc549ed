"""DirectML (any DirectX 12 GPU on Windows) through the optional ``torch-directml`` package."""

from __future__ import annotations

import gc
import importlib
from types import ModuleType

import torch

from modules.devices.base import DeviceBackend, MemoryInfo, system_memory
from modules.devices.registry import register_backend


def _torch_directml() -> ModuleType | None:
    """The module, or ``None`` when it is not installed or fails to load (it is Windows/WSL only)."""
    try:
        return importlib.import_module("torch_directml")
    except Exception:  # a broken optional install must mean "not available", never a crash
        return None


@register_backend
class DirectMLBackend(DeviceBackend):
    name = "directml"
    torch_type = "privateuseone"
    auto_half_dtypes = (torch.float16,)

    @classmethod
    def is_available(cls) -> bool:
        module = _torch_directml()
        return module is not None and bool(module.is_available())

    def device_count(self) -> int:
        module = _torch_directml()
        return int(module.device_count()) if module is not None else 0

    def torch_device(self, index: int | None = None) -> torch.device:
        module = _torch_directml()
        if module is None:
            raise RuntimeError("torch-directml is not installed")
        return module.device(index if index is not None else module.default_device())

    def memory_info(self, device: torch.device) -> MemoryInfo:
        # DirectML exposes no reliable free/total query; host RAM is the honest upper bound for shared-memory
        # GPUs and the limit that matters when offloading.
        return system_memory()

    def empty_cache(self) -> None:
        gc.collect()

    def generator(self, seed: int, device: torch.device) -> torch.Generator:
        # DirectML has no device generators; CPU noise moved to the device is also what A1111 does there.
        return torch.Generator(device="cpu").manual_seed(int(seed))
