"""``backend: auto`` as a pure policy (CPU flags, model size, installed packages -> choice) and on a real load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modules.backends import auto
from modules.backends.auto import AUTO_MIN_UNET_PARAMS, CpuFeatures, choose_backend, read_cpu_flags

SD15_PARAMS = 859_520_964
EMBEDDED_UNET = Path(__file__).resolve().parents[2] / "models" / "Stable-diffusion" / "easel-shapes-v1" / "unet"
NO_BF16 = CpuFeatures.from_flags({"avx2", "fma"})  # this project's AMD EPYC: bf16 only emulated
BF16 = CpuFeatures.from_flags({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"})
BOTH = {"openvino", "onnxruntime"}


def test_large_unet_on_a_cpu_without_bf16_runs_onnxruntime_in_fp32() -> None:
    """Measured here: both runtimes run f32 at about the same speed; ONNX Runtime prepares 3.5x faster."""
    choice = choose_backend(device_type="cpu", unet_params=SD15_PARAMS, cpu=NO_BF16, installed=BOTH)
    assert (choice.backend, choice.precision) == ("onnxruntime", "fp32")
    assert "no native bf16" in choice.reason
    only_openvino = choose_backend(device_type="cpu", unet_params=SD15_PARAMS, cpu=NO_BF16, installed={"openvino"})
    assert (only_openvino.backend, only_openvino.precision) == ("openvino", "fp32")  # never a bf16 hint here


def test_large_unet_on_a_bf16_cpu_runs_openvino_with_its_default_hint() -> None:
    choice = choose_backend(device_type="cpu", unet_params=SD15_PARAMS, cpu=BF16, installed=BOTH)
    assert (choice.backend, choice.precision) == ("openvino", "auto")
    asked = choose_backend(device_type="cpu", unet_params=SD15_PARAMS, cpu=BF16, installed=BOTH, precision="fp32")
    assert (asked.backend, asked.precision) == ("openvino", "fp32")


@pytest.mark.parametrize("installed, expected", [({"onnxruntime"}, ("onnxruntime", "fp32")),
                                                 (set(), ("torch", "auto"))])
def test_only_importable_runtimes_are_chosen(installed: set[str], expected: tuple[str, str]) -> None:
    choice = choose_backend(device_type="cpu", unet_params=SD15_PARAMS, cpu=BF16, installed=installed)
    assert (choice.backend, choice.precision) == expected


def test_export_needs_free_memory() -> None:
    needed = int(auto.EXPORT_MEMORY_FACTOR * 4 * SD15_PARAMS)
    short = choose_backend(device_type="cpu", unet_params=SD15_PARAMS, cpu=NO_BF16, installed=BOTH,
                           free_memory=needed - 1)
    assert short.backend == "torch" and "GiB free" in short.reason
    enough = choose_backend(device_type="cpu", unet_params=SD15_PARAMS, cpu=NO_BF16, installed=BOTH,
                            free_memory=needed)
    assert enough.backend == "onnxruntime"


@pytest.mark.parametrize("kwargs, reason", [
    ({"device_type": "cuda"}, "TensorRT only when asked"),
    ({"device_type": "mps"}, "mps device"),
    ({"unet_params": None}, "no UNet"),
    ({"unet_params": AUTO_MIN_UNET_PARAMS - 1}, "would not pay back"),
    ({"precision": "bf16"}, "precision bf16"),
    ({"quantized": True}, "quantized"),
])
def test_stays_on_torch(kwargs: dict, reason: str) -> None:
    arguments = {"device_type": "cpu", "unet_params": SD15_PARAMS, "cpu": BF16, "installed": BOTH, **kwargs}
    choice = choose_backend(**arguments)
    assert choice.backend == "torch" and reason in choice.reason
    assert choice.precision == arguments.get("precision", "auto")


def test_embedded_model_stays_on_torch() -> None:
    """easel-shapes-v1 (2.8 M UNet parameters): export would cost more than it saves, and parity is promised."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(json.loads((EMBEDDED_UNET / "config.json").read_text()))
    params = sum(parameter.numel() for parameter in unet.parameters())
    assert params < AUTO_MIN_UNET_PARAMS
    for cpu in (NO_BF16, BF16):
        assert choose_backend(device_type="cpu", unet_params=params, cpu=cpu, installed=BOTH).backend == "torch"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert read_cpu_flags(x86) == {"fpu", "avx2", "fma", "avx512_bf16"}
    assert CpuFeatures.from_flags(read_cpu_flags(x86)).native_bf16
    assert CpuFeatures.from_flags(read_cpu_flags(arm)).native_bf16
    assert not CpuFeatures.from_flags({"avx2", "fma", "f16c"}).native_bf16
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


def test_installed_backends_only_lists_findable_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(auto.BACKEND_PACKAGES, "openvino", "surely_not_an_installed_package_name")
    assert "openvino" not in auto.installed_backends()
