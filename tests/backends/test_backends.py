"""Every execution backend that runs on this CPU matches PyTorch, caches its export and restores cleanly.

Tolerance: at most 2/255 per pixel (max abs uint8 difference) after 3 Euler steps with CFG on the tiny model;
fp32 ONNX Runtime / OpenVINO agree with PyTorch to ~2e-6 per UNet call, so this leaves rounding room only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modules.backends.base import ComponentWrapper, ShapePolicy, active_backend
from modules.backends.registry import BACKENDS, get_backend, load_builtin_backends, register_backend
from modules.backends.torch_backend import TorchBackend
from modules.core.errors import UnsupportedError
from modules.core.settings import CmdFlags, Options, Settings

PIXEL_TOLERANCE = 2


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_registry_has_all_backends_and_refuses_duplicates() -> None:
    load_builtin_backends()
    assert {"torch", "onnxruntime", "openvino", "tensorrt"} <= set(BACKENDS)
    with pytest.raises(ValueError, match="already registered"):
        register_backend(TorchBackend)


def test_shape_policy_round_trips() -> None:
    policy = ShapePolicy("static", 2, 512, 768)
    assert policy.key == "static-b2-768x512"
    assert ShapePolicy.parse(policy.key) == policy
    assert ShapePolicy.parse("dynamic").kind == "dynamic"


@pytest.fixture(scope="module")
def reference(loaded, generate) -> np.ndarray:
    return generate(loaded)


@pytest.mark.parametrize("name, precision", [("torch", "fp32"), ("torch", "bf16"), ("onnxruntime", "fp32"),
                                             ("openvino", "fp32")])
def test_backend_matches_pytorch_caches_and_restores(loaded, generate, reference, tmp_path: Path, name: str,
                                                     precision: str) -> None:
    backend = get_backend(name)
    unet_before, vae_before = loaded.pipe.unet, loaded.pipe.vae
    backend.prepare(loaded, cache_dir=tmp_path, precision=precision)
    try:
        assert isinstance(loaded.pipe.unet, ComponentWrapper)
        assert active_backend(loaded.pipe) == name
        # bf16 rounds activations to 8 mantissa bits: the tiny random model's pixels then move visibly.
        tolerance = PIXEL_TOLERANCE if precision == "fp32" else 64
        assert _max_diff(generate(loaded), reference) <= tolerance
    finally:
        backend.restore(loaded)
    assert loaded.pipe.unet is unet_before and loaded.pipe.vae is vae_before
    assert np.array_equal(generate(loaded), reference), "output after restore differs from before"
    if name == "torch":
        return
    files = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.suffix in (".onnx", ".xml")}
    assert files and all(loaded.info.sha256[:16] in str(path) for path in files)
    backend.prepare(loaded, cache_dir=tmp_path, precision=precision)
    try:
        assert _max_diff(generate(loaded), reference) <= PIXEL_TOLERANCE  # the cached export runs the same model
    finally:
        backend.restore(loaded)
    assert {path: path.stat().st_mtime_ns for path in files} == files, "the export was written again"


def test_exported_backends_refuse_controlnet_residuals(loaded, tmp_path: Path) -> None:
    backend = get_backend("onnxruntime")
    backend.prepare(loaded, cache_dir=tmp_path, precision="fp32", include_vae=False)
    try:
        sample = torch.zeros(1, 4, 8, 8)
        with pytest.raises(UnsupportedError, match="ControlNet"):
            loaded.pipe.unet(sample, torch.tensor(10.0), encoder_hidden_states=torch.zeros(1, 77, 32),
                             down_block_additional_residuals=[sample])
    finally:
        backend.restore(loaded)


def test_onnxruntime_refuses_half_on_cpu(loaded, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedError, match="fp32"):
        get_backend("onnxruntime").prepare(loaded, cache_dir=tmp_path, precision="fp16")
    assert not isinstance(loaded.pipe.unet, ComponentWrapper)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only failure path")
def test_tensorrt_fails_early_without_nvidia(loaded, tmp_path: Path) -> None:
    backend = get_backend("tensorrt")
    available, reason = backend.is_available()
    assert not available and "NVIDIA" in reason
    with pytest.raises(UnsupportedError, match="tensorrt.*NVIDIA"):
        backend.prepare(loaded, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir()), "nothing may be exported before failing"


def test_infotext_names_the_backend(loaded, generate, tmp_path: Path) -> None:
    from modules.backends.setup import ExecutionSetup

    setup = ExecutionSetup(Settings(CmdFlags(), Options()), None)
    captured: list[dict] = []
    backend = get_backend("onnxruntime")
    backend.prepare(loaded, cache_dir=tmp_path, precision="fp32", include_vae=False)
    try:
        generate(loaded, [setup.infotext_preprocessor, lambda run: captured.append(run.extra_generation_params)])
    finally:
        backend.restore(loaded)
    assert captured[0]["Backend"] == "onnxruntime"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_compile_on_gpu_matches(loaded, generate, tmp_path: Path) -> None:
    loaded.pipe.to("cuda")
    try:
        reference = generate(loaded)
        get_backend("torch").prepare(loaded, cache_dir=tmp_path, precision="fp32", compile_mode="default")
        try:
            assert _max_diff(generate(loaded), reference) <= PIXEL_TOLERANCE
        finally:
            get_backend("torch").restore(loaded)
    finally:
        loaded.pipe.to("cpu")


def test_exported_backend_refuses_a_lora_loaded_after_export(loaded, tmp_path: Path) -> None:
    from peft import LoraConfig

    backend = get_backend("onnxruntime")
    backend.prepare(loaded, cache_dir=tmp_path, precision="fp32", include_vae=False)
    unet = loaded.pipe.unet
    unet.original.add_adapter(LoraConfig(r=2, target_modules=["to_q"]), adapter_name="probe")
    try:
        with pytest.raises(UnsupportedError, match="LoRA adapters"):
            unet(torch.zeros(1, 4, 8, 8), torch.tensor(10.0), encoder_hidden_states=torch.zeros(1, 77, 32))
    finally:
        unet.original.delete_adapters("probe")
        backend.restore(loaded)
