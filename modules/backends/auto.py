"""``backend: auto``: which execution backend runs a model, decided from the device, the CPU and the model's size.

The policy (:func:`choose_backend`) is a pure function of what it is told, so it can be tested for CPUs, models
and packages this machine does not have; :func:`probe_cpu`, :func:`installed_backends` and
:func:`unet_parameter_count` gather those facts on the running machine.

* On an accelerator (CUDA, ROCm, XPU, MPS, DirectML) PyTorch stays: it is the fastest general path there, and
  TensorRT engines are built only when ``backend: tensorrt`` asks for them (minutes per shape profile).
* On a CPU, a UNet of at least :data:`AUTO_MIN_UNET_PARAMS` parameters gets the calibrated routes of
  :mod:`modules.backends.adaptive` (:func:`plan_cpu_routes`): PyTorch fp32, a PyTorch bf16 copy at once where the
  CPU has native bf16, and the exported runtime :func:`choose_backend` names (in the order of
  :func:`cpu_preference`, when there is free memory to export it, :data:`EXPORT_MEMORY_FACTOR`), built in the
  background; each call runs the fastest one measured. Smaller UNets stay on plain PyTorch: the export cannot pay
  back, and they keep pixel parity with plain diffusers and a ready-in-seconds start (the embedded
  ``easel-shapes-v1`` has 2.8 M).
* The precision is f32 unless the CPU has native bf16 (AVX512-BF16, AMX, Arm BF16). Without it bf16 is emulated:
  on this project's AMD EPYC (AVX2/FMA) a bf16 matmul ran at 1.1 GFLOP/s against 89.6 GFLOP/s in fp32 on one
  thread, and a PyTorch bf16 SD 1.5 UNet step at 256² took 284 s against 8.6 s in fp32.

Measured with ``cli/bench.py --unet --threads 1 --reps 3`` (interleaved, medians, UNet batch 2, random weights;
the machine shared with a training run; results in ``.bench/``), seconds per UNet step and ratio to PyTorch fp32:

============================  =====  ==================  ==================  =================================
UNet                          size   PyTorch fp32        ONNX Runtime fp32   OpenVINO f32 (its default here)
============================  =====  ==================  ==================  =================================
embedded, 2.7 M parameters    128²   0.074               0.028 (2.6x)        0.036 (2.0x)
SD 1.5 layout, 37.5 M         256²   1.45                0.87 (1.67x)        1.03 (1.41x)
SD 1.5 layout, 37.5 M         512²   16.9                10.6 (1.60x)        11.4 (1.48x)
SD 1.5, 860 M                 256²   8.62                6.19 (1.39x)        6.59 (1.31x)
SD 1.5, 860 M                 512²   28.2                26.2 (1.08x)        25.3 (1.11x)
============================  =====  ==================  ==================  =================================

First preparation (export + session/compile; later loads read the cached export): embedded 7 s (ONNX Runtime) /
27 s (OpenVINO); 37.5 M 70 s / 147 s; SD 1.5 65 s / 225 s. Resident memory added next to the PyTorch UNet (kept
for restore and per-call fallback): SD 1.5 2.5 GiB (ONNX Runtime) / 3.7 GiB (OpenVINO). Even at 100% of the
measured fp32 matmul peak an SD 1.5 512² step (1.61 TFLOP) would take 17.9 s here, 1.57x PyTorch's 28.2 s: without
bf16 hardware no backend can reach the 2.4x measured with OpenVINO's bf16 hint on a CPU that has it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Below this many UNet parameters ``auto`` keeps PyTorch on a CPU. The measured break-even lies between the two
#: small points above: the 2.7 M embedded UNet saves ~0.9 s per 20-step 128² image against 7-27 s of first
#: preparation (and would break the 3 s readiness and pixel-parity promises), while the 37.5 M SD 1.5-layout UNet
#: saves 37 % of every 512² step (10.6 s against 16.9 s, interleaved; ~126 s per 20-step image) against 70 s of
#: first preparation, paying back within its first image at its native size.
AUTO_MIN_UNET_PARAMS = 30_000_000

#: Exporting needs free RAM of about this many times the fp32 UNet: tracing holds the graph next to the weights,
#: and the runtime's copy stays. Measured on SD 1.5 (3.2 GiB fp32 UNet): the bench's peak RSS was 18.8 GiB over
#: ~11.3 GiB of steady state (exports, and ONNX Runtime's unfused 512² attention buffers), ~2.3x the UNet.
EXPORT_MEMORY_FACTOR = 3.0

#: Backend name -> the Python package whose presence makes it selectable.
BACKEND_PACKAGES: dict[str, str] = {"openvino": "openvino", "onnxruntime": "onnxruntime"}

BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})  # x86 AVX512-BF16 / AMX; Arm "bf16" (v8.6)


def cpu_preference(native_bf16: bool) -> tuple[str, ...]:
    """Exported CPU runtimes ``auto`` may pick, best first.

    With native bf16, OpenVINO first: its default bf16 hint ran an SD 1.5 512² step 2.4x faster than PyTorch fp32
    on such a CPU, which ONNX Runtime's fp32-only CPU provider cannot match. Without it both run f32 at
    about the same speed (table above), and ONNX Runtime prepares 3.5x faster with a third less memory.
    """
    return ("openvino", "onnxruntime") if native_bf16 else ("onnxruntime", "openvino")


@dataclass(frozen=True)
class CpuFeatures:
    """The CPU facts the policy needs: its feature flags and whether bf16 runs natively."""

    flags: frozenset[str] = frozenset()
    native_bf16: bool = False

    @classmethod
    def from_flags(cls, flags: Iterable[str]) -> CpuFeatures:
        names = frozenset(flags)
        return cls(names, bool(names & BF16_CPU_FLAGS))


@dataclass(frozen=True)
class AutoChoice:
    """What ``auto`` resolved to, and why (logged, and shown in the execution setup's record)."""

    backend: str
    precision: str
    reason: str


def choose_backend(*, device_type: str, unet_params: int | None, cpu: CpuFeatures, installed: Collection[str],
                   precision: str = "auto", quantized: bool = False, free_memory: int | None = None) -> AutoChoice:
    """The backend and precision ``backend: auto`` uses; pure, so it can be checked for any machine.

    ``unet_params`` is None for pipelines without a UNet (transformer models), which stay on PyTorch.
    ``precision`` is the requested one (``auto``/fp32/fp16/bf16); only ``auto`` and fp32 may move a model to an
    exported graph, because the CPU runtimes are chosen for their fp32 (or native bf16) speed. A ``quantized``
    UNet stays on PyTorch: its quantized layers are PyTorch kernels the exporters cannot trace. ``free_memory``
    (bytes of available RAM, None = unknown) below :data:`EXPORT_MEMORY_FACTOR` times the fp32 UNet keeps PyTorch.
    """
    if device_type != "cpu":
        return AutoChoice("torch", precision, f"{device_type} device: PyTorch (TensorRT only when asked for)")
    if unet_params is None:
        return AutoChoice("torch", precision, "no UNet: PyTorch")
    if quantized:
        return AutoChoice("torch", precision, "quantized UNet: PyTorch")
    if unet_params < AUTO_MIN_UNET_PARAMS:
        return AutoChoice("torch", precision, f"UNet of {unet_params / 1e6:.1f} M parameters is below "
                                              f"{AUTO_MIN_UNET_PARAMS / 1e6:.0f} M: export would not pay back")
    if precision not in ("auto", "fp32"):
        return AutoChoice("torch", precision, f"precision {precision} asked for: PyTorch")
    needed = EXPORT_MEMORY_FACTOR * 4 * unet_params
    if free_memory is not None and free_memory < needed:
        return AutoChoice("torch", precision, f"{free_memory / 2 ** 30:.1f} GiB free, exporting needs "
                                              f"{needed / 2 ** 30:.1f} GiB: PyTorch")
    for name in cpu_preference(cpu.native_bf16):
        if name in installed:
            hint = "auto" if precision == "auto" and cpu.native_bf16 and name == "openvino" else "fp32"
            why = ("its default (bf16) hint on a CPU with native bf16" if hint == "auto"
                   else "f32: no native bf16 on this CPU" if precision == "auto" else "fp32 asked for")
            return AutoChoice(name, hint, f"UNet of {unet_params / 1e6:.0f} M parameters on a CPU: {name}, {why}")
    return AutoChoice("torch", precision, "no exported CPU runtime installed (pip install onnxruntime or openvino)")


@dataclass(frozen=True)
class AutoPlan:
    """The routes ``backend: auto`` sets up for a large UNet on a CPU (see :mod:`modules.backends.adaptive`):
    PyTorch fp32 always; a PyTorch bf16 copy at once where the CPU has native bf16; one exported runtime, built in
    the background, where one is installed (OpenVINO with a bf16 hint on native-bf16 CPUs, else the fp32 runtime
    :func:`cpu_preference` ranks first). The jobs' measured times then decide which one runs."""

    bf16: bool
    export: tuple[str, str] | None
    reason: str


def plan_cpu_routes(*, unet_params: int | None, cpu: CpuFeatures, installed: Collection[str],
                    precision: str = "auto", quantized: bool = False, free_memory: int | None = None,
                    allow_export: bool = True) -> AutoPlan | None:
    """None where the model stays on plain PyTorch fp32 (the cases :func:`choose_backend` keeps on torch for size,
    quantization or an explicit half precision); else what to calibrate between. Pure, like choose_backend."""
    if unet_params is None or quantized or unet_params < AUTO_MIN_UNET_PARAMS or precision not in ("auto", "fp32"):
        return None
    bf16 = cpu.native_bf16 and precision == "auto"
    choice = choose_backend(device_type="cpu", unet_params=unet_params, cpu=cpu, installed=installed,
                            precision=precision, free_memory=free_memory)
    export = None
    if allow_export and choice.backend != "torch":
        export = (choice.backend, "bf16" if choice.precision == "auto" and cpu.native_bf16 else "fp32")
    if not bf16 and export is None:
        return None
    routes = ["torch fp32", *(["torch bf16"] if bf16 else []), *([f"{export[0]} {export[1]} (background export)"]
                                                                  if export else [])]
    return AutoPlan(bf16, export, f"UNet of {unet_params / 1e6:.0f} M parameters on a CPU: fastest measured of "
                                  f"{', '.join(routes)}")


def read_cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The ``flags`` line of ``/proc/cpuinfo`` (empty where the file does not exist, e.g. Windows or macOS)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def probe_cpu() -> CpuFeatures:
    """This machine's CPU: ``/proc/cpuinfo`` flags, or oneDNN's own bf16 check where there are no flags to read."""
    flags = read_cpu_flags()
    if flags:
        return CpuFeatures.from_flags(flags)
    try:
        import torch

        return CpuFeatures(frozenset(), bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
    except (AttributeError, RuntimeError):
        return CpuFeatures()


def installed_backends(candidates: Iterable[str] = tuple(BACKEND_PACKAGES)) -> set[str]:
    """Which of ``candidates`` have their package importable (found on the path; nothing is imported)."""
    return {name for name in candidates if importlib.util.find_spec(BACKEND_PACKAGES.get(name, name)) is not None}


def unet_parameter_count(pipe: Any) -> int | None:
    """Parameters of ``pipe.unet`` (None when the pipeline has no UNet)."""
    unet = getattr(pipe, "unet", None)
    if unet is None or not hasattr(unet, "parameters"):
        return None
    return sum(parameter.numel() for parameter in unet.parameters())
