"""Device backends (CUDA, ROCm, XPU, MPS, DirectML, CPU) behind one protocol; see :mod:`modules.devices.select`."""

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
