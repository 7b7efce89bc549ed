"""``ExecutionSetup``: the configured backend and memory policy are applied to each model the manager loads."""

from __future__ import annotations

import typing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from modules.backends import auto
from modules.backends.adaptive import AdaptiveUNet
from modules.backends.base import ComponentWrapper, active_backend, restore_components
from modules.backends.setup import ExecutionSetup
from modules.core.settings import CmdFlags, MemoryStrategyName, Options, QuantizationName, Settings
from modules.devices.select import select_device
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.manager import ModelManager
from modules.processing.params import Txt2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry


def _services(tiny_models_dir: Path, tmp_path: Path, options: Options) -> Any:
    settings = Settings(CmdFlags(data_dir=tmp_path / "data", precision="full", no_half=True), options)
    catalog = CheckpointCatalog(tiny_models_dir / "Stable-diffusion", HashCache(tmp_path / "hashes.json"))
    catalog.refresh()
    device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
    manager = ModelManager(catalog, device)
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: manager.current)
    return SimpleNamespace(settings=settings, device=device, manager=manager,
                           generation=SimpleNamespace(processor=processor))


def install(services: Any) -> ExecutionSetup:
    """The composition root's wiring of the execution setup (webui.wire_processing_core, step 3)."""
    setup = ExecutionSetup(services.settings, services.device)
    services.manager.on_model_loading(setup.load_components)
    services.manager.on_model_loaded(setup.on_model_loaded)
    services.generation.processor.prompt_preprocessors.append(setup.infotext_preprocessor)
    return setup


def _infotext(services: Any) -> str:
    params = Txt2ImgParams(prompt="a red circle", steps=2, width=64, height=64, seed=3, sampler_name="Euler")
    return services.generation.processor.process(ProcessingRun(params, services.settings.options)).infotexts[0]


def test_option_names_match_the_registries() -> None:
    from modules.memory import STRATEGIES
    from modules.quantization.methods import METHODS

    assert set(typing.get_args(MemoryStrategyName)) - {"auto"} == set(STRATEGIES)
    assert set(typing.get_args(QuantizationName)) - {"none"} == set(METHODS)


def test_install_applies_backend_on_load_and_names_it(tiny_models_dir: Path, tmp_path: Path) -> None:
    services = _services(tiny_models_dir, tmp_path, Options(backend="onnxruntime"))
    setup = install(services)
    loaded = services.manager.ensure_loaded("tiny-sd")
    try:
        record = setup.applied[loaded.pipe]
        assert record.errors == [] and record.backend == "onnxruntime"
        assert active_backend(loaded.pipe) == "onnxruntime"
        assert record.memory.names == []  # CPU policy is SDPA only, and exported graphs skip attention patches
        assert list((tmp_path / "data" / "cache" / "onnx").glob("*/unet.onnx"))
        run = SimpleNamespace(sd_model=loaded, extra_generation_params={})
        services.generation.processor.prompt_preprocessors[0](run)
        assert run.extra_generation_params == {"Backend": "onnxruntime"}
    finally:
        restore_components(loaded.pipe)


def test_quantization_option_quantizes_at_load_and_names_it(tiny_models_dir: Path, tmp_path: Path) -> None:
    """The ``quantization`` option through the service path: the manager's loading hook has diffusers load the UNet
    quantized, and the image's infotext names the method (a run on another model would not)."""
    services = _services(tiny_models_dir, tmp_path, Options(quantization="quanto-int8"))
    setup = install(services)
    loaded = services.manager.ensure_loaded("tiny-sd")
    record = setup.applied[loaded.pipe]
    assert record.errors == [] and record.quantization is not None
    assert record.quantization.routes == {"unet": "diffusers"} and loaded.pipe.unet.hf_quantizer is not None
    assert "Quantization: quanto-int8" in _infotext(services)
    plain = _services(tiny_models_dir, tmp_path / "plain", Options())
    install(plain)
    plain.manager.ensure_loaded("tiny-sd")
    assert "Quantization:" not in _infotext(plain)


def test_auto_keeps_a_small_model_on_plain_torch(tiny_models_dir: Path, tmp_path: Path) -> None:
    services = _services(tiny_models_dir, tmp_path, Options(memory_strategies=["auto", "vae_tiling"]))
    assert services.settings.options.backend == "auto"
    setup = install(services)
    loaded = services.manager.ensure_loaded("tiny-sd")
    record = setup.applied[loaded.pipe]
    try:
        assert record.errors == [] and record.backend == "torch"
        assert record.choice is not None and record.choice.backend == "torch"
        assert "would not pay back" in record.choice.reason
        assert not isinstance(loaded.pipe.unet, ComponentWrapper), "plain diffusers UNet, untouched"
        assert record.memory.names == ["sdpa", "vae_tiling"]  # "auto" (CPU: SDPA) plus the named strategy
        assert "Backend:" not in _infotext(services)
        assert not (tmp_path / "data" / "cache" / "onnx").exists() and not (tmp_path / "data" / "cache" /
                                                                             "openvino").exists()
    finally:
        record.remove(loaded.pipe)


def test_auto_routes_a_large_unet_and_falls_back_to_torch_per_call(
        tiny_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny UNet stands in for a large one (threshold lowered); ONNX Runtime is the runtime it may export to.
    What an exported graph cannot take (ControlNet residuals, a LoRA loaded after the export) runs on the
    original PyTorch UNet, and the infotext then names no backend."""
    monkeypatch.setattr(auto, "AUTO_MIN_UNET_PARAMS", 0)
    monkeypatch.setattr("modules.backends.setup.installed_backends", lambda: {"onnxruntime"})
    services = _services(tiny_models_dir, tmp_path, Options())
    setup = install(services)
    loaded = services.manager.ensure_loaded("tiny-sd")
    record = setup.applied[loaded.pipe]
    try:
        assert record.errors == [] and record.backend == "auto"
        assert record.choice is not None and record.choice.precision == "fp32"  # --no-half: fp32 routes only
        assert record.adaptive is not None and record.adaptive.export is not None
        assert record.adaptive.export.wait(120), record.adaptive.export.error
        unet = loaded.pipe.unet
        assert isinstance(unet, AdaptiveUNet) and set(unet.routes) == {"torch:fp32", "onnxruntime:fp32"}
        sample = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
        states = torch.randn(2, 77, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            for _ in range(3):  # calibration at this shape, then the measured choice
                unet(sample, 10, states)
        assert unet.used["onnxruntime:fp32"] + unet.used["torch:fp32"] == 3
        # what the exported graph cannot take: ControlNet residuals (one per down-block output of the tiny UNet)
        control = {"down_block_additional_residuals": [torch.full((2, c, h, h), 0.5) for c, h in
                                                       ((32, 8), (32, 8), (32, 4), (64, 4))],
                   "mid_block_additional_residual": torch.full((2, 64, 4, 4), 0.5)}
        with torch.no_grad():
            out = unet(sample, 10, states, **control).sample
            expected = unet.original(sample, 10, states, **control).sample
            plain = unet.original(sample, 10, states).sample
        assert unet.last_route == "torch:fp32" and torch.equal(out, expected) and not torch.equal(out, plain)
        run = SimpleNamespace(sd_model=loaded, extra_generation_params={})
        setup.infotext_preprocessor(run)  # begins a job: counts restart
        with torch.no_grad():
            unet(sample, 10, states, **control)
        assert run.extra_generation_params["Backend"](0) is None  # what ran was PyTorch fp32: A1111 writes none
        with torch.no_grad():
            # a LoRA loaded after export changes the PyTorch weights only: the call must not run the stale graph
            from peft import LoraConfig

            unet.original.add_adapter(LoraConfig(r=2, target_modules=["to_q", "to_v"], init_lora_weights=False),
                                      adapter_name="probe")
            with_lora = unet(sample, 10, states).sample
            assert unet.last_route == "torch:fp32"
            assert torch.equal(with_lora, unet.original(sample, 10, states).sample)
            unet.original.delete_adapters("probe")
    finally:
        record.remove(loaded.pipe)
    assert not isinstance(loaded.pipe.unet, ComponentWrapper)


def test_an_explicit_torch_precision_runs_the_unet_in_it(tiny_models_dir: Path, tmp_path: Path) -> None:
    """``backend: torch`` with ``execution_precision: bf16`` on an fp32 model runs a bf16 copy of the UNet (the
    picture moves by bf16 rounding, not more); ``fp32``, the loaded dtype, leaves the UNet untouched."""
    import numpy as np

    def image(services: Any) -> np.ndarray:
        params = Txt2ImgParams(prompt="a red circle", steps=2, width=64, height=64, seed=3, sampler_name="Euler")
        result = services.generation.processor.process(ProcessingRun(params, services.settings.options))
        return np.asarray(result.images[0].convert("RGB")).astype(np.int16)

    same = _services(tiny_models_dir, tmp_path / "fp32", Options(backend="torch", execution_precision="fp32"))
    install(same)
    fp32 = same.manager.ensure_loaded("tiny-sd")
    assert not isinstance(fp32.pipe.unet, ComponentWrapper)
    reference = image(same)
    services = _services(tiny_models_dir, tmp_path / "bf16", Options(backend="torch", execution_precision="bf16"))
    setup = install(services)
    loaded = services.manager.ensure_loaded("tiny-sd")
    try:
        record = setup.applied[loaded.pipe]
        assert record.errors == [] and record.backend == "torch"
        unet = loaded.pipe.unet
        assert isinstance(unet, ComponentWrapper) and unet.dtype == torch.float32  # the loop keeps fp32 latents
        assert {parameter.dtype for parameter in unet._runner.parameters()} == {torch.bfloat16}
        moved = np.abs(image(services) - reference)
        assert moved.max() > 0 and moved.mean() < 8
    finally:
        record.remove(loaded.pipe)
