"""Every CPU quantization path produces an image, shrinks the UNet's Linear weights and is removed cleanly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modules.quantization.apply import quantize_components
from modules.quantization.methods import METHODS, get_method, size_of


@pytest.fixture(scope="module")
def reference(loaded, generate) -> np.ndarray:
    return generate(loaded)


@pytest.mark.parametrize("method", ["bnb-int8", "bnb-nf4", "bnb-fp4", "quanto-int8", "quanto-int4",
                                    "quanto-float8", "torchao-int8"])
def test_quantized_unet_makes_an_image_and_is_removed(loaded, generate, reference, method: str) -> None:
    available, reason = get_method(method).is_available()
    if not available:
        pytest.skip(reason)
    unet = loaded.pipe.unet
    applied = quantize_components(loaded, method, components=("unet",))
    try:
        assert loaded.pipe.unet is not unet
        before, after = applied.sizes["unet"]
        assert after.quantized_layers > 0 and after.bytes < before.bytes, applied.describe()
        image = generate(loaded)
        assert image.shape == reference.shape and image.std() > 0
    finally:
        applied.remove()
    assert loaded.pipe.unet is unet
    assert np.array_equal(generate(loaded), reference)


def test_quanto_cache_round_trips(loaded, tmp_path: Path) -> None:
    first = quantize_components(loaded, "quanto-int8", cache_dir=tmp_path)
    quantized = loaded.pipe.unet
    first.remove()
    assert list(tmp_path.rglob("quantization_map.json"))
    second = quantize_components(loaded, "quanto-int8", cache_dir=tmp_path)
    try:
        sample = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        states = torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            a = quantized(sample, 10, encoder_hidden_states=states).sample
            b = loaded.pipe.unet(sample, 10, encoder_hidden_states=states).sample
        assert torch.equal(a, b)
    finally:
        second.remove()


def test_size_report_counts_packed_storage(loaded) -> None:
    plain = size_of(loaded.pipe.unet)
    assert plain.quantized_layers == 0
    assert plain.bytes == sum(p.numel() * 4 for p in loaded.pipe.unet.parameters()) + sum(
        b.numel() * b.element_size() for b in loaded.pipe.unet.buffers())
    assert {"bnb-int8", "bnb-nf4", "bnb-fp4", "quanto-int8", "quanto-int4", "quanto-float8",
            "torchao-int8"} <= set(METHODS)
    assert get_method("quanto-int8").serializable


def test_nncf_int8_compresses_an_openvino_model() -> None:
    pytest.importorskip("nncf")
    import openvino as ov
    from openvino import opset13 as ops

    from modules.quantization.nncf_int8 import compress_ov_model

    data = ops.parameter([1, 64], np.float32, name="x")
    weight = ops.constant(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32))
    model = ov.Model([ops.matmul(data, weight, False, True)], [data])
    compressed = compress_ov_model(model, "int8")
    types = {str(op.get_element_type()) for op in compressed.get_ops() if op.get_type_name() == "Constant"}
    assert any("8" in kind for kind in types), types
