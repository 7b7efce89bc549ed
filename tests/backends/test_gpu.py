"""CUDA paths: PyTorch fp16 + SDPA against plain diffusers fp16, TensorRT against PyTorch, bitsandbytes via diffusers.

All marked ``gpu`` and skipped where PyTorch sees no CUDA device; the CPU-side guarantees (TensorRT refusing before
any export, fp16 refused by ONNX Runtime's CPU provider) are in test_backends.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modules.backends.registry import get_backend

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.fixture
def on_cuda(loaded):  # type: ignore[no-untyped-def]
    loaded.pipe.to("cuda", torch.float16)
    try:
        yield loaded
    finally:
        loaded.pipe.to("cpu", torch.float32)


def test_torch_fp16_sdpa_matches_plain_diffusers_fp16(on_cuda, generate, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reference = generate(on_cuda)
    backend = get_backend("torch")
    backend.prepare(on_cuda, cache_dir=tmp_path, precision="fp16")
    try:
        assert _max_diff(generate(on_cuda), reference) <= 2
    finally:
        backend.restore(on_cuda)


def test_tensorrt_engine_matches_pytorch(on_cuda, generate, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backend = get_backend("tensorrt")
    available, reason = backend.is_available()
    if not available:
        pytest.skip(reason)
    reference = generate(on_cuda)
    backend.prepare(on_cuda, cache_dir=tmp_path, precision="fp16")
    try:
        assert _max_diff(generate(on_cuda), reference) <= 8  # fp16 kernels chosen by TensorRT
        assert list(tmp_path.rglob("*.plan")), "the engine is cached"
    finally:
        backend.restore(on_cuda)


@pytest.mark.parametrize("method", ["bnb-int8", "bnb-nf4"])
def test_bitsandbytes_loads_through_diffusers_on_cuda(on_cuda, generate, method: str) -> None:  # type: ignore[no-untyped-def]
    """On a GPU diffusers' bitsandbytes quantizer runs (on a CPU it refuses and Easel builds the layers by hand):
    the UNet is reloaded through it, shrinks, stays near the fp16 image, and the kept original goes back exactly."""
    from modules.quantization.apply import ROUTE_DIFFUSERS, quantize_components
    from modules.quantization.methods import get_method

    available, reason = get_method(method).is_available()
    if not available:
        pytest.skip(reason)
    reference = generate(on_cuda)
    unet = on_cuda.pipe.unet
    applied = quantize_components(on_cuda, method, keep_original=True)
    try:
        assert applied.routes == {"unet": ROUTE_DIFFUSERS}, applied.routes
        quantized = on_cuda.pipe.unet
        assert quantized.hf_quantizer is not None and quantized.device.type == "cuda"
        assert quantized.config.quantization_config.quant_method.value == "bitsandbytes"
        before, after = applied.sizes["unet"]
        assert after.quantized_layers > 0 and after.bytes < before.bytes, applied.describe()
        diff = np.abs(generate(on_cuda).astype(np.int16) - reference.astype(np.int16))
        largest, mean = (3, 0.5) if method == "bnb-int8" else (16, 3.0)
        assert diff.max() <= largest and diff.mean() <= mean, f"{method}: max {diff.max()}, mean {diff.mean():.2f}"
    finally:
        applied.remove()
    assert on_cuda.pipe.unet is unet and _max_diff(generate(on_cuda), reference) <= 1
