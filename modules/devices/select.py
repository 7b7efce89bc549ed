"""Choose the compute device once at start-up, from the launch flags and what the backends detect."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

# Imported for their registration side effect: every backend module must be loaded before selection.
from modules.devices import cpu, cuda, directml, mps, rocm, xpu  # noqa: F401
from modules.devices.base import DeviceBackend, MemoryInfo
from modules.devices.registry import BACKENDS

log = logging.getLogger(__name__)

# Discrete accelerators first, then Apple's integrated GPU, then the DirectML fallback, then the CPU.
SELECTION_ORDER: tuple[str, ...] = ("cuda", "rocm", "xpu", "mps", "directml", "cpu")


@dataclass(frozen=True)
class Device:
    """The device Easel computes on, chosen once; services receive it instead of probing torch themselves."""

    backend: DeviceBackend
    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype

    @property
    def name(self) -> str:
        return self.backend.name

    def memory_info(self) -> MemoryInfo:
        return self.backend.memory_info(self.device)

    def empty_cache(self) -> None:
        self.backend.empty_cache()

    def synchronize(self) -> None:
        self.backend.synchronize(self.device)

    def generator(self, seed: int) -> torch.Generator:
        return self.backend.generator(seed, self.device)

    def describe(self) -> str:
        return f"{self.name} ({self.device}, {str(self.dtype).removeprefix('torch.')}, " \
               f"vae {str(self.vae_dtype).removeprefix('torch.')})"


def choose_backend(use_cpu: bool, order: tuple[str, ...] = SELECTION_ORDER) -> DeviceBackend:
    """The first available backend in ``order``; ``--use-cpu`` short-circuits to the CPU."""
    if use_cpu:
        return BACKENDS["cpu"]()
    for name in order:
        backend_cls = BACKENDS.get(name)
        if backend_cls is not None and backend_cls.is_available():
            return backend_cls()
    return BACKENDS["cpu"]()


def select_device(
    use_cpu: bool,
    device_id: int | None,
    precision: str,
    no_half: bool,
    *,
    no_half_vae: bool = False,
) -> Device:
    """Build the :class:`Device` for the launch flags. A ``device_id`` the backend does not have is an error."""
    backend = choose_backend(use_cpu)
    count = backend.device_count()
    if device_id is not None and backend.name != "cpu" and not 0 <= device_id < count:
        raise ValueError(f"--device-id {device_id}: the {backend.name} backend has {count} device(s) (0..{count - 1})")
    device = backend.torch_device(device_id)
    dtype = torch.float32 if no_half else backend.default_dtype(precision, device)
    vae_dtype = torch.float32 if (no_half or no_half_vae) else dtype
    selected = Device(backend=backend, device=device, dtype=dtype, vae_dtype=vae_dtype)
    log.info("device: %s", selected.describe())
    return selected
