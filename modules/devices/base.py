"""The device protocol: what the rest of Easel may ask of an accelerator, whatever its vendor.

A backend is a small stateless class; the selected device (backend + ``torch.device`` + dtypes) is the
:class:`modules.devices.select.Device` value built once at start-up. Each platform lives in its own file and
registers itself in :data:`modules.devices.registry.BACKENDS`.
"""

from __future__ import annotations

import gc
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import psutil
import torch

PRECISION_ALIASES: dict[str, str] = {
    "autocast": "auto",
    "auto": "auto",
    "full": "fp32",
    "fp32": "fp32",
    "float32": "fp32",
    "half": "fp16",
    "fp16": "fp16",
    "float16": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
}
_NAMED_DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}


def normalize_precision(precision: str) -> str:
    """Map the A1111/SD.Next spellings (``autocast``, ``full``, ``half``, ``bf16``, ...) onto auto/fp32/fp16/bf16."""
    try:
        return PRECISION_ALIASES[precision.lower()]
    except KeyError:
        allowed = ", ".join(sorted(PRECISION_ALIASES))
        raise ValueError(f"precision {precision!r} is not one of: {allowed}") from None


@dataclass(frozen=True)
class MemoryInfo:
    """Device memory in bytes. ``used`` is ``total - free`` as the driver sees it (other processes included)."""

    free: int
    total: int
    used: int

    @classmethod
    def from_free_total(cls, free: int, total: int) -> MemoryInfo:
        return cls(free=int(free), total=int(total), used=int(total) - int(free))


def system_memory() -> MemoryInfo:
    """Host RAM: what the CPU backend and unified-memory devices report."""
    vm = psutil.virtual_memory()
    return MemoryInfo.from_free_total(vm.available, vm.total)


class DeviceBackend(ABC):
    """One accelerator family. Subclasses set the class attributes and implement the abstract methods."""

    name: ClassVar[str]
    torch_type: ClassVar[str]  # the torch.device type string: cuda, xpu, mps, cpu, privateuseone
    # Half dtypes worth trying for precision "auto", best first; empty means fp32 is the sensible default.
    auto_half_dtypes: ClassVar[tuple[torch.dtype, ...]] = ()

    @classmethod
    @abstractmethod
    def is_available(cls) -> bool:
        """Whether this backend can run here (library present and a device visible)."""

    def device_count(self) -> int:
        return 1

    def torch_device(self, index: int | None = None) -> torch.device:
        return torch.device(self.torch_type, index if index is not None else 0)

    @abstractmethod
    def memory_info(self, device: torch.device) -> MemoryInfo:
        """Free/total/used bytes of ``device``."""

    def empty_cache(self) -> None:
        """Hand cached allocator blocks back to the driver (after unloading a model)."""
        gc.collect()

    def synchronize(self, device: torch.device) -> None:
        """Wait for queued kernels; needed before timing and before reading memory figures."""
        return None  # synchronous backends (CPU, DirectML) have nothing to wait for

    def generator(self, seed: int, device: torch.device) -> torch.Generator:
        """A generator seeded with ``seed`` on ``device`` (the same seed gives the same noise)."""
        return torch.Generator(device=device).manual_seed(int(seed))

    def probe_ops(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """A tiny matmul and convolution in ``dtype``: the two op kinds a diffusion UNet is made of."""
        x = torch.linspace(-1.0, 1.0, 64).reshape(8, 8).to(device=device, dtype=dtype)
        product = x @ x.T
        image = torch.linspace(-1.0, 1.0, 256).reshape(1, 4, 8, 8).to(device=device, dtype=dtype)
        weight = torch.full((4, 4, 3, 3), 0.05, device=device, dtype=dtype)
        convolved = torch.nn.functional.conv2d(image, weight, padding=1)
        return torch.cat([product.flatten(), convolved.flatten()]).float().cpu()

    def supports_dtype(self, device: torch.device, dtype: torch.dtype) -> bool:
        """Run :meth:`probe_ops` in ``dtype``: claimed support is not enough (old GPUs, drivers, DirectML)."""
        try:
            result = self.probe_ops(device, dtype)
        except (RuntimeError, TypeError, NotImplementedError, AssertionError):
            return False
        return bool(torch.isfinite(result).all().item())

    def default_dtype(self, precision: str, device: torch.device) -> torch.dtype:
        """The compute dtype for ``precision``; a half dtype that fails the probe falls back to fp32."""
        wanted = normalize_precision(precision)
        if wanted == "fp32":
            return torch.float32
        candidates = self.auto_half_dtypes if wanted == "auto" else (_NAMED_DTYPES[wanted],)
        for dtype in candidates:
            if self.supports_dtype(device, dtype):
                return dtype
        return torch.float32
