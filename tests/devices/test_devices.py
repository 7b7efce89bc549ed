"""Device backends: detection faked per platform, selection order, dtype probe fallbacks, memory, generators."""

from __future__ import annotations

import dataclasses
import sys
import types
from collections.abc import Iterator

import psutil
import pytest
import torch

from modules.devices import BACKENDS, SELECTION_ORDER, Device, choose_backend, register_backend, select_device
from modules.devices.base import DeviceBackend, MemoryInfo, normalize_precision
from modules.devices.cpu import CpuBackend
from modules.devices.directml import DirectMLBackend


@pytest.fixture
def nothing_available(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Start every test from "no accelerator", whatever the machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "torch_directml", None)  # import now fails
    yield monkeypatch


def fake_directml(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("torch_directml")
    module.is_available = lambda: True  # type: ignore[attr-defined]
    module.device_count = lambda: 1  # type: ignore[attr-defined]
    module.default_device = lambda: 0  # type: ignore[attr-defined]
    module.device = lambda index=0: torch.device("privateuseone", index)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch_directml", module)


def test_registry_holds_one_backend_per_platform() -> None:
    assert set(BACKENDS) == {"cpu", "cuda", "rocm", "xpu", "mps", "directml"}
    assert set(SELECTION_ORDER) == set(BACKENDS)
    assert all(BACKENDS[name].name == name for name in BACKENDS)


def test_duplicate_registration_is_an_error() -> None:
    class AnotherCpu(CpuBackend):
        name = "cpu"

    with pytest.raises(ValueError, match="already registered"):
        register_backend(AnotherCpu)
    assert BACKENDS["cpu"] is CpuBackend


def test_no_accelerator_selects_cpu(nothing_available: pytest.MonkeyPatch) -> None:
    assert choose_backend(use_cpu=False).name == "cpu"


@pytest.mark.parametrize(
    ("fake", "expected"),
    [("cuda", "cuda"), ("rocm", "rocm"), ("xpu", "xpu"), ("mps", "mps"), ("directml", "directml")],
)
def test_each_backend_detects_its_platform(nothing_available: pytest.MonkeyPatch, fake: str, expected: str) -> None:
    mp = nothing_available
    if fake in ("cuda", "rocm"):
        mp.setattr(torch.cuda, "is_available", lambda: True)
        if fake == "rocm":
            mp.setattr(torch.version, "hip", "6.4.43482")
    elif fake == "xpu":
        mp.setattr(torch.xpu, "is_available", lambda: True)
    elif fake == "mps":
        mp.setattr(torch.backends.mps, "is_available", lambda: True)
    else:
        fake_directml(mp)
    available = {name for name, cls in BACKENDS.items() if cls.is_available()}
    assert available == {expected, "cpu"}
    assert choose_backend(use_cpu=False).name == expected
    assert choose_backend(use_cpu=True).name == "cpu"


@pytest.mark.parametrize("first", range(len(SELECTION_ORDER)))
def test_selection_order(monkeypatch: pytest.MonkeyPatch, first: int) -> None:
    """With every backend from position ``first`` on available, the one at ``first`` wins."""
    for position, name in enumerate(SELECTION_ORDER):
        monkeypatch.setattr(BACKENDS[name], "is_available", classmethod(lambda cls, on=position >= first: on))
    assert choose_backend(use_cpu=False).name == SELECTION_ORDER[first]
    assert SELECTION_ORDER[:2] == ("cuda", "rocm") and SELECTION_ORDER[-2:] == ("directml", "cpu")


def test_select_device_on_faked_cuda(nothing_available: pytest.MonkeyPatch) -> None:
    mp = nothing_available
    mp.setattr(torch.cuda, "is_available", lambda: True)
    mp.setattr(torch.cuda, "device_count", lambda: 2)
    selected = select_device(use_cpu=False, device_id=1, precision="autocast", no_half=False)
    assert selected.name == "cuda"
    assert selected.device == torch.device("cuda", 1)
    # This torch has no CUDA kernels, so the runtime probe fails and the dtype falls back to fp32.
    if not torch.backends.cuda.is_built():
        assert selected.dtype == torch.float32
    with pytest.raises(ValueError, match="--device-id 2"):
        select_device(use_cpu=False, device_id=2, precision="autocast", no_half=False)


def test_use_cpu_wins_and_cpu_ignores_device_id(nothing_available: pytest.MonkeyPatch) -> None:
    nothing_available.setattr(torch.cuda, "is_available", lambda: True)
    selected = select_device(use_cpu=True, device_id=3, precision="autocast", no_half=False)
    assert (selected.name, selected.device) == ("cpu", torch.device("cpu"))


@pytest.mark.parametrize(
    ("precision", "no_half", "no_half_vae", "dtype", "vae_dtype"),
    [
        ("autocast", False, False, torch.float32, torch.float32),  # CPU: half brings no speed
        ("full", False, False, torch.float32, torch.float32),
        ("half", False, False, torch.float16, torch.float16),
        ("bf16", False, False, torch.bfloat16, torch.bfloat16),
        ("half", True, False, torch.float32, torch.float32),
        ("half", False, True, torch.float16, torch.float32),
    ],
)
def test_cpu_dtypes(
    nothing_available: pytest.MonkeyPatch,
    precision: str,
    no_half: bool,
    no_half_vae: bool,
    dtype: torch.dtype,
    vae_dtype: torch.dtype,
) -> None:
    selected = select_device(use_cpu=False, device_id=None, precision=precision, no_half=no_half,
                             no_half_vae=no_half_vae)
    assert (selected.dtype, selected.vae_dtype) == (dtype, vae_dtype)


class FlakyHalfBackend(CpuBackend):
    """A CPU backend (not registered) whose half dtypes misbehave the way old GPUs and drivers do."""

    name = "flaky"
    auto_half_dtypes = (torch.float16, torch.bfloat16)
    nan_dtypes: tuple[torch.dtype, ...] = ()
    raising_dtypes: tuple[torch.dtype, ...] = ()

    def probe_ops(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        if dtype in self.raising_dtypes:
            raise RuntimeError(f'"addmm_impl" not implemented for {dtype}')
        result = super().probe_ops(device, dtype)
        return torch.full_like(result, float("nan")) if dtype in self.nan_dtypes else result


def test_probe_falls_back_to_fp32_on_nan() -> None:
    backend = FlakyHalfBackend()
    backend.nan_dtypes = (torch.float16, torch.bfloat16)
    cpu = torch.device("cpu")
    assert backend.default_dtype("half", cpu) == torch.float32
    assert backend.default_dtype("autocast", cpu) == torch.float32


def test_probe_falls_back_to_fp32_on_error() -> None:
    backend = FlakyHalfBackend()
    backend.raising_dtypes = (torch.bfloat16,)
    assert backend.default_dtype("bf16", torch.device("cpu")) == torch.float32
    assert backend.default_dtype("half", torch.device("cpu")) == torch.float16


def test_auto_tries_the_next_half_dtype() -> None:
    backend = FlakyHalfBackend()
    backend.nan_dtypes = (torch.float16,)
    assert backend.default_dtype("autocast", torch.device("cpu")) == torch.bfloat16


def test_probe_really_runs_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_conv(*args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("slow_conv2d_cpu not implemented for 'Half'")

    monkeypatch.setattr(torch.nn.functional, "conv2d", broken_conv)
    assert CpuBackend().default_dtype("half", torch.device("cpu")) == torch.float32


def test_unknown_precision_names_the_choices() -> None:
    assert normalize_precision("AUTOCAST") == "auto"
    with pytest.raises(ValueError, match="fp16"):
        normalize_precision("fp8")


def test_cpu_memory_info_is_real() -> None:
    info = Device(CpuBackend(), torch.device("cpu"), torch.float32, torch.float32).memory_info()
    assert isinstance(info, MemoryInfo)
    total = psutil.virtual_memory().total
    assert info.total == total > 0
    assert 0 < info.free <= info.total
    assert info.used == info.total - info.free


def test_generator_is_reproducible(nothing_available: pytest.MonkeyPatch) -> None:
    selected = select_device(use_cpu=False, device_id=None, precision="autocast", no_half=False)
    first = torch.randn(4, 8, generator=selected.generator(1234))
    again = torch.randn(4, 8, generator=selected.generator(1234))
    other = torch.randn(4, 8, generator=selected.generator(1235))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert selected.generator(1).device == torch.device("cpu")


def test_directml_generator_stays_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_directml(monkeypatch)
    backend = DirectMLBackend()
    assert backend.torch_device(0) == torch.device("privateuseone", 0)
    assert backend.generator(7, backend.torch_device(0)).device == torch.device("cpu")


def test_device_is_frozen_and_housekeeping_is_safe_on_cpu(nothing_available: pytest.MonkeyPatch) -> None:
    selected = select_device(use_cpu=False, device_id=None, precision="autocast", no_half=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        selected.dtype = torch.float16  # type: ignore[misc]
    selected.empty_cache()
    selected.synchronize()
    assert "cpu" in selected.describe()


def test_backends_are_device_backends() -> None:
    assert all(issubclass(cls, DeviceBackend) for cls in BACKENDS.values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA or ROCm device")
def test_real_gpu_selection() -> None:
    selected = select_device(use_cpu=False, device_id=None, precision="autocast", no_half=False)
    assert selected.name in ("cuda", "rocm")
    assert selected.dtype in (torch.float16, torch.bfloat16)
    info = selected.memory_info()
    assert 0 < info.free <= info.total
    first = torch.randn(8, generator=selected.generator(42), device=selected.device)
    assert torch.equal(first, torch.randn(8, generator=selected.generator(42), device=selected.device))
    selected.synchronize()
    selected.empty_cache()
