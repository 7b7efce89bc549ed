"""CUDA paths: PyTorch fp16 + SDPA against plain diffusers fp16, TensorRT against PyTorch, bitsandbytes nf4 memory.

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


def test_bitsandbytes_nf4_shrinks_the_unet_on_cuda(on_cuda) -> None:  # type: ignore[no-untyped-def]
    from modules.quantization.methods import get_method, size_of

    method = get_method("bnb-nf4")
    available, reason = method.is_available()
    if not available:
        pytest.skip(reason)
    unet = on_cuda.pipe.unet
    quantized = method.quantize(unet)
    assert size_of(quantized).bytes < size_of(unet).bytes
