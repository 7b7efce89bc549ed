"""A1111's ``modules.devices`` names (``device``, ``dtype``, ``torch_gc()``, ``autocast()``...) over the device
Easel selected at start-up (``services.device``), for drop-in extensions. ``modules.devices`` (Easel's device
backends) resolves these names lazily from here."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from modules.extensions import compat


class NansException(Exception):
    pass


def _device() -> Any:
    try:
        return getattr(compat.bound(), "device", None)
    except RuntimeError:
        return None


def torch_gc() -> None:
    import gc

    gc.collect()
    device = _device()
    if device is not None:
        device.empty_cache()


def get_optimal_device() -> Any:
    import torch

    device = _device()
    return device.device if device is not None else torch.device("cpu")


def get_optimal_device_name() -> str:
    return str(get_optimal_device())


def get_device_for(task: str) -> Any:
    return get_optimal_device()


def has_mps() -> bool:
    device = _device()
    return device is not None and device.device.type == "mps"


def has_xpu() -> bool:
    device = _device()
    return device is not None and device.device.type == "xpu"


@contextlib.contextmanager
def autocast(disable: bool = False) -> Iterator[None]:
    """Easel runs models in their load dtype; autocast is not used, as A1111 does for fp32."""
    yield


@contextlib.contextmanager
def without_autocast(disable: bool = False) -> Iterator[None]:
    yield


def cond_cast_unet(tensor: Any) -> Any:
    return tensor


def cond_cast_float(tensor: Any) -> Any:
    return tensor.float() if getattr(tensor, "dtype", None) is not None else tensor


def test_for_nans(x: Any, where: str) -> None:
    import torch

    if torch.all(torch.isnan(x)).item():
        raise NansException(f"A tensor with all NaNs was produced in {where}.")


def randn(seed: int, shape: Any, generator: Any = None) -> Any:
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    return torch.randn(shape, generator=gen).to(get_optimal_device())


def randn_without_seed(shape: Any, generator: Any = None) -> Any:
    import torch

    return torch.randn(shape, generator=generator).to(get_optimal_device())


def value(name: str) -> Any:
    """The A1111 ``modules.devices`` attribute ``name``; raises ``KeyError`` for a name it does not define."""
    import torch

    device = _device()
    functions = {"torch_gc": torch_gc, "get_optimal_device": get_optimal_device, "NansException": NansException,
                 "get_optimal_device_name": get_optimal_device_name, "get_device_for": get_device_for,
                 "has_mps": has_mps, "has_xpu": has_xpu, "autocast": autocast, "without_autocast": without_autocast,
                 "cond_cast_unet": cond_cast_unet, "cond_cast_float": cond_cast_float, "test_for_nans": test_for_nans,
                 "randn": randn, "randn_without_seed": randn_without_seed, "torch_npu_set_device": lambda: None,
                 "first_time_calculation": lambda: None}
    if name in functions:
        return functions[name]
    current = device.device if device is not None else torch.device("cpu")
    values = {"device": current, "cpu": torch.device("cpu"), "device_interrogate": current,
              "device_gfpgan": current, "device_esrgan": current, "device_codeformer": current,
              "dtype": device.dtype if device is not None else torch.float32,
              "dtype_vae": device.vae_dtype if device is not None else torch.float32,
              "dtype_unet": device.dtype if device is not None else torch.float32,
              "dtype_inference": device.dtype if device is not None else torch.float32,
              "unet_needs_upcast": False, "fp8": False, "backend": "torch", "force_fp16": False}
    return values[name]
