"""Every CPU quantization method, called as production calls it, shrinks the UNet's Linear weights and makes the
unquantized image within a stated tolerance; with the original kept, removal restores the exact image."""

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


# (largest, mean) per-pixel difference from the unquantized image; 8-bit keeps it near-exact. The 4-bit bounds leave
# room for the CPU's kernels: the same quantized weights differ by a mean of 2.05 on one x86 CI machine.
TOLERANCE = {
    "bnb-int8": (3, 0.5), "quanto-int8": (3, 0.5), "torchao-int8": (3, 0.5),
    "bnb-nf4": (16, 3.0), "bnb-fp4": (16, 3.0), "quanto-int4": (16, 3.0), "quanto-float8": (16, 3.0),
}


@pytest.mark.parametrize("method", sorted(TOLERANCE))
def test_production_quantization_matches_the_unquantized_image(loaded, generate, reference, method: str) -> None:
    """The call the execution setup makes on every loaded model (``keep_original=False``: the memory is really
    saved, so undoing means reloading the model)."""
    available, reason = get_method(method).is_available()
    if not available:
        pytest.skip(reason)
    unet = loaded.pipe.unet
    try:
        applied = quantize_components(loaded, method, components=("unet",), keep_original=False)
        assert loaded.pipe.unet is not unet and applied.originals == {}
        before, after = applied.sizes["unet"]
        assert after.quantized_layers > 0 and after.bytes < before.bytes, applied.describe()
        diff = np.abs(generate(loaded).astype(np.int16) - reference.astype(np.int16))
        with pytest.raises(RuntimeError, match="reload the model"):
            applied.remove()
    finally:
        loaded.pipe.unet = unet  # what the manager's reload does
    largest, mean = TOLERANCE[method]
    assert diff.max() <= largest and diff.mean() <= mean, f"{method}: max {diff.max()}, mean {diff.mean():.2f}"


def test_kept_original_is_put_back_exactly(loaded, generate, reference) -> None:
    unet = loaded.pipe.unet
    applied = quantize_components(loaded, "quanto-int8", components=("unet",), keep_original=True)
    assert loaded.pipe.unet is not unet
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
    import openvino as ov
    from openvino import opset13 as ops

    from modules.quantization.nncf_int8 import compress_ov_model

    data = ops.parameter([1, 64], np.float32, name="x")
    weight = ops.constant(np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32))
    model = ov.Model([ops.matmul(data, weight, False, True)], [data])
    compressed = compress_ov_model(model, "int8")
    types = {str(op.get_element_type()) for op in compressed.get_ops() if op.get_type_name() == "Constant"}
    assert any("8" in kind for kind in types), types
