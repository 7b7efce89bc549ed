"""Device backends (CUDA, ROCm, XPU, MPS, DirectML, CPU) behind one protocol; see :mod:`modules.devices.select`.

Also A1111's ``modules.devices`` for drop-in extensions: ``devices.device``, ``devices.dtype``,
``devices.torch_gc()``... resolve lazily from :mod:`modules.extensions.a1111_devices` (the selected device);
Easel's own code never uses them.
"""

from typing import Any

from modules.devices.base import DeviceBackend, MemoryInfo
from modules.devices.registry import BACKENDS, register_backend
from modules.devices.select import SELECTION_ORDER, Device, choose_backend, select_device

__all__ = [
    "BACKENDS",
    "SELECTION_ORDER",
    "Device",
    "DeviceBackend",
    "MemoryInfo",
    "choose_backend",
    "register_backend",
    "select_device",
]


A1111_NAMES = frozenset({
    "device", "cpu", "dtype", "dtype_vae", "dtype_unet", "dtype_inference", "device_interrogate", "device_gfpgan",
    "device_esrgan", "device_codeformer", "unet_needs_upcast", "fp8", "backend", "force_fp16", "torch_gc",
    "get_optimal_device", "get_optimal_device_name", "get_device_for", "has_mps", "has_xpu", "autocast",
    "without_autocast", "cond_cast_unet", "cond_cast_float", "test_for_nans", "NansException", "randn",
    "randn_without_seed", "torch_npu_set_device", "first_time_calculation"})


def __getattr__(name: str) -> Any:
    if name not in A1111_NAMES:  # submodules are imported, not looked up here
        raise AttributeError(f"module 'modules.devices' has no attribute {name!r}")
    from modules.extensions.a1111_devices import value

    try:
        return value(name)
    except KeyError:
        raise AttributeError(f"module 'modules.devices' has no attribute {name!r}") from None
