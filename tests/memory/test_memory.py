"""Every memory strategy makes the plain pipeline's image (within a stated tolerance) and is removed without a
trace.

On this CPU the offload strategies run with the CPU as both "device" and "offload" target: the accelerate /
diffusers hooks are really installed and exercised, they just have no memory to save here. Tolerances are in
uint8 pixel levels: strategies that only move weights or split work must match the plain image exactly or up to
float rounding; token merging changes the computation itself, so it is held to a mean difference instead.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.core.errors import UnsupportedError
from modules.memory import STRATEGIES, apply_strategies, auto_policy, get_strategy
from modules.memory.strategies import MemoryContext, register_strategy

GIB = 1024 ** 3


@pytest.fixture(scope="module")
def reference(loaded, generate) -> np.ndarray:
    return generate(loaded)


def _weights(pipe) -> dict[str, torch.Tensor]:
    return {f"{name}.{key}": value.detach().clone() for name in ("unet", "vae", "text_encoder")
            for key, value in getattr(pipe, name).state_dict().items()}


TOLERANCE = {  # (largest, mean) per-pixel difference allowed against the plain pipeline's image
    "attention_slicing": (2, 0.5), "sdpa": (2, 0.5), "vae_slicing": (0, 0.0), "model_cpu_offload": (0, 0.0),
    "group_offload": (0, 0.0),
    "vae_tiling": (32, 4.0),  # overlapping tiles are blended at their seams: close, not equal
}
TOKEN_MERGING_MEAN_DIFF = 12.0  # token merging averages similar tokens: close to the plain image, not equal


def _diff(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    assert image.shape == reference.shape
    return np.abs(image.astype(np.int16) - reference.astype(np.int16))


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_strategy_makes_the_plain_image_and_is_removed_cleanly(loaded, generate, reference, name: str) -> None:
    applied = get_strategy(name).apply(loaded.pipe, MemoryContext(device=torch.device("cpu")))
    try:
        diff = _diff(generate(loaded), reference)
    finally:
        applied.remove()
    largest, mean = TOLERANCE[name]
    assert diff.max() <= largest and diff.mean() <= mean, f"{name}: max {diff.max()}, mean {diff.mean():.2f}"
    assert np.array_equal(generate(loaded), reference), f"{name} left a trace after removal"


def test_token_merging_stays_close_to_the_plain_image(loaded, generate, reference) -> None:
    """tomesd swaps the UNet's transformer blocks for merging ones while applied (on this tiny 64x64 model no
    block has enough tokens to merge, so the image must stay within the tolerance) and swaps them back."""
    def tome_blocks() -> int:
        return sum(type(module).__name__.startswith("ToMe") for module in loaded.pipe.unet.modules())

    applied = get_strategy("token_merging").apply(loaded.pipe, MemoryContext(device=torch.device("cpu")))
    try:
        assert tome_blocks() > 0
        diff = _diff(generate(loaded), reference)
    finally:
        applied.remove()
    assert tome_blocks() == 0
    assert diff.mean() <= TOKEN_MERGING_MEAN_DIFF, f"mean pixel difference {diff.mean():.2f}"
    assert np.array_equal(generate(loaded), reference), "token merging left a trace after removal"


def test_sequential_offload_moves_the_weights_off_and_back(loaded, generate, reference) -> None:
    """accelerate's sequential hooks cannot use the CPU as execution device (its post-forward fails moving weights
    back to "meta"), so on CPU the hooks are checked, not an image; the GPU test compares the image."""
    applied = get_strategy("sequential_offload").apply(loaded.pipe, MemoryContext(device=torch.device("cpu")))
    try:
        assert loaded.pipe.unet.device.type == "meta"  # the processor must read pipe._execution_device instead
    finally:
        applied.remove()
    assert loaded.pipe.unet.device.type == "cpu"
    assert np.array_equal(generate(loaded), reference), "sequential_offload left a trace after removal"


def test_vae_upcast_runs_fp32_and_restores_half_weights(loaded, generate, reference) -> None:
    vae = loaded.pipe.vae
    fp32_weights = {key: value.clone() for key, value in vae.state_dict().items()}
    vae.to(torch.bfloat16)
    try:
        before = {key: value.clone() for key, value in vae.state_dict().items()}
        applied = get_strategy("vae_upcast").apply(loaded.pipe, MemoryContext(device=torch.device("cpu")))
        assert vae.dtype == torch.float32
        upcast = generate(loaded)
        applied.remove()
        assert _diff(upcast, reference).max() <= 2, "the fp32 VAE must decode the bf16 weights' image"
        assert vae.dtype == torch.bfloat16
        assert all(torch.equal(before[key], value) for key, value in vae.state_dict().items())
    finally:
        vae.to(torch.float32)
        vae.load_state_dict(fp32_weights)  # fp32 -> bf16 -> fp32 rounds; put the test model's weights back


def test_policy_thresholds_and_flags() -> None:
    assert auto_policy("cpu", 64 * GIB) == ["sdpa"]
    assert "sequential_offload" in auto_policy("cuda", 3 * GIB)
    assert "model_cpu_offload" in auto_policy("cuda", 6 * GIB)
    assert auto_policy("cuda", 10 * GIB) == ["sdpa", "vae_slicing"]
    assert auto_policy("cuda", 24 * GIB) == ["sdpa"]
    assert "sequential_offload" in auto_policy("cuda", 24 * GIB, lowvram=True)
    assert "model_cpu_offload" in auto_policy("cuda", 24 * GIB, medvram=True)


def test_applied_policy_removes_in_reverse_and_weights_are_untouched(loaded, generate, reference) -> None:
    before = _weights(loaded.pipe)
    policy = apply_strategies(loaded.pipe, ["sdpa", "vae_slicing", "vae_tiling", "token_merging"],
                              torch.device("cpu"))
    assert policy.names == ["sdpa", "vae_slicing", "vae_tiling", "token_merging"]
    generate(loaded)
    policy.remove()
    after = _weights(loaded.pipe)
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert np.array_equal(generate(loaded), reference)


def test_registry_rejects_duplicates_and_unknown_names() -> None:
    assert len(STRATEGIES) >= 9
    with pytest.raises(ValueError, match="already registered"):
        register_strategy(type(get_strategy("sdpa")))
    with pytest.raises(UnsupportedError, match="unknown memory strategy"):
        get_strategy("nope")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["model_cpu_offload", "sequential_offload", "group_offload"])
def test_offload_on_gpu(loaded, generate, reference, name: str) -> None:
    applied = get_strategy(name).apply(loaded.pipe, MemoryContext(device=torch.device("cuda")))
    try:
        image = generate(loaded)
    finally:
        applied.remove()
    assert _diff(image, reference).max() <= 2, f"{name} on CUDA must make the CPU image up to float rounding"
