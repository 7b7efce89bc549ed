"""Every quantization method, applied as production applies it (the model manager's loading hook and the execution
setup), goes through diffusers' load-time quantizer where diffusers has a path on this device, else by hand and
says why; the image stays within a stated tolerance of the unquantized one; the quantized UNet is cached and read
back; with the original kept, removal restores the exact image."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch

from modules.backends.setup import AppliedExecution, ExecutionSetup
from modules.core.settings import CmdFlags, Options, QuantizationName, Settings
from modules.devices.select import select_device
from modules.models.catalog import CheckpointCatalog, CheckpointInfo, HashCache
from modules.models.manager import LoadedModel, ModelManager
from modules.quantization.apply import ROUTE_CACHE, ROUTE_DIFFUSERS, quantize_components
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


def _diff(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(image.astype(np.int16) - reference.astype(np.int16))


def _within(method: str, image: np.ndarray, reference: np.ndarray) -> None:
    diff = _diff(image, reference)
    largest, mean = TOLERANCE[method]
    assert diff.max() <= largest and diff.mean() <= mean, f"{method}: max {diff.max()}, mean {diff.mean():.2f}"


def _production(models_dir: Path, data_dir: Path, method: str) -> tuple[ModelManager, ExecutionSetup]:
    """The composition root's wiring (webui.wire_processing_core, steps 1 and 3) on the tiny models, CPU fp32."""
    options = Options(quantization=cast(QuantizationName, method), backend="torch", memory_strategies=[])
    settings = Settings(CmdFlags(data_dir=data_dir, precision="full", no_half=True), options)
    catalog = CheckpointCatalog(models_dir / "Stable-diffusion", HashCache(data_dir / "hashes.json"))
    catalog.refresh()
    device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
    manager = ModelManager(catalog, device)
    setup = ExecutionSetup(settings, device)
    manager.on_model_loading(setup.load_components)
    manager.on_model_loaded(setup.on_model_loaded)
    return manager, setup


def _linear_classes(module: torch.nn.Module) -> set[str]:
    """Class names of the layers that replaced the UNet's Linear layers, and of their weights."""
    attention = next(layer for name, layer in module.named_modules() if name.endswith("attn1.to_q"))
    return {type(attention).__name__, type(attention.weight).__name__}


LIBRARY_CLASSES = {"bnb-int8": {"Linear8bitLt", "Int8Params"}, "bnb-nf4": {"Linear4bit", "Params4bit"},
                   "bnb-fp4": {"Linear4bit", "Params4bit"}, "quanto-int8": {"QLinear", "WeightQBytesTensor"},
                   "quanto-float8": {"QLinear", "WeightQBytesTensor"}, "quanto-int4": {"QLinear", "WeightQBitsTensor"},
                   "torchao-int8": {"Linear", "Int8Tensor"}}
QUANT_METHOD = {"bnb": "bitsandbytes", "quanto": "quanto", "torchao": "torchao"}


@pytest.mark.parametrize("method", sorted(TOLERANCE))
def test_production_quantization_matches_the_unquantized_image(tiny_models_dir: Path, tmp_path: Path, generate,
                                                               reference, method: str) -> None:
    """What the ``quantization`` option does on every load: the UNet comes out of diffusers' loader already
    quantized (its ``hf_quantizer`` and ``config.quantization_config`` set by diffusers, its Linear layers the
    library's classes); nothing to undo but a reload."""
    available, reason = get_method(method).is_available()
    if not available:
        pytest.skip(reason)
    manager, setup = _production(tiny_models_dir, tmp_path, method)
    quantized = manager.ensure_loaded("tiny-sd")
    record: AppliedExecution = setup.applied[quantized.pipe]
    applied = record.quantization
    assert record.errors == [] and applied is not None and applied.originals == {}
    unet = quantized.pipe.unet
    refusal = get_method(method).diffusers_refusal(torch.device("cpu"))
    if refusal is None:
        assert applied.routes == {"unet": ROUTE_DIFFUSERS}
        assert unet.hf_quantizer is not None
        assert unet.config.quantization_config.quant_method.value == QUANT_METHOD[method.split("-")[0]]
    else:  # bitsandbytes on a CPU: diffusers refuses, so the same library layers are built by hand, and say so
        assert applied.routes == {"unet": f"by hand: {refusal}"} and "needs a GPU" in refusal
        assert getattr(unet, "hf_quantizer", None) is None
    assert _linear_classes(unet) == LIBRARY_CLASSES[method]
    before, after = applied.sizes["unet"]
    assert after.quantized_layers > 0 and after.bytes < before.bytes, applied.describe()
    assert before.bytes == size_of(_unquantized_unet(tiny_models_dir)).bytes
    with pytest.raises(RuntimeError, match="reload the model"):
        applied.remove()
    _within(method, generate(quantized), reference)


def _unquantized_unet(models_dir: Path) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(models_dir / "Stable-diffusion" / "tiny-sd"), subfolder="unet")


def test_quantized_unet_is_cached_and_read_back(tiny_models_dir: Path, tmp_path: Path, generate) -> None:
    """The first load quantizes through diffusers and saves the quantized UNet with ``save_pretrained``; a second
    load (a fresh process: new manager and setup) reads that folder through diffusers' pre-quantized loader,
    rewriting nothing, and draws the same pixels."""
    manager, setup = _production(tiny_models_dir, tmp_path, "quanto-int8")
    first = manager.ensure_loaded("tiny-sd")
    assert setup.applied[first.pipe].quantization.routes == {"unet": ROUTE_DIFFUSERS}  # type: ignore[union-attr]
    (cached,) = (tmp_path / "cache" / "quantized").glob(f"{first.info.sha256[:16]}-quanto-int8-float32/unet")
    weights = cached / "diffusion_pytorch_model.safetensors"
    config = (cached / "config.json").read_text(encoding="utf-8")
    assert weights.is_file() and '"quant_method": "quanto"' in config and '"weights_dtype": "int8"' in config
    stamp = weights.stat().st_mtime_ns
    image = generate(first)
    manager.unload()

    manager, setup = _production(tiny_models_dir, tmp_path, "quanto-int8")
    second = manager.ensure_loaded("tiny-sd")
    applied = setup.applied[second.pipe].quantization
    assert applied is not None and applied.routes == {"unet": ROUTE_CACHE}
    assert second.pipe.unet.hf_quantizer.pre_quantized and _linear_classes(second.pipe.unet) == LIBRARY_CLASSES[
        "quanto-int8"]
    assert weights.stat().st_mtime_ns == stamp and not list(cached.parent.glob("*.partial*"))
    assert np.array_equal(generate(second), image)


def test_torchao_is_not_cached(tiny_models_dir: Path, tmp_path: Path) -> None:
    """torchao's serialised form is a pickle, which Easel does not load: it quantizes on each load instead."""
    if not get_method("torchao-int8").is_available()[0]:
        pytest.skip("torchao is not installed")
    for _ in range(2):
        manager, setup = _production(tiny_models_dir, tmp_path, "torchao-int8")
        loaded = manager.ensure_loaded("tiny-sd")
        assert setup.applied[loaded.pipe].quantization.routes == {"unet": ROUTE_DIFFUSERS}  # type: ignore[union-attr]
    assert not (tmp_path / "cache" / "quantized").exists()


def test_single_file_checkpoint_is_quantized_by_hand(tmp_path: Path, generate) -> None:
    """A single-file checkpoint has no component folder for diffusers to load from: the loading hook passes, and
    the loaded UNet is quantized by hand, in place (the original is not kept), which the record says."""
    from modules.models.families import FAMILIES
    from tests.tiny_pipelines import save_tiny_checkpoints

    family = FAMILIES["sd15"]
    paths = save_tiny_checkpoints(family, tmp_path)

    def load() -> LoadedModel:
        pipe = family.load(paths["single"], torch_dtype=torch.float32, config_dir=paths["config"])
        pipe.set_progress_bar_config(disable=True)
        info = CheckpointInfo(paths["single"], paths["single"].name, "safetensors", paths["single"].stat().st_size,
                              sha256="0" * 64)
        return LoadedModel(info, pipe, family, (64, 64), 0.0)

    reference = generate(load())
    options = Options(quantization="quanto-int8", backend="torch", memory_strategies=[])
    settings = Settings(CmdFlags(data_dir=tmp_path / "data", precision="full", no_half=True), options)
    setup = ExecutionSetup(settings, select_device(use_cpu=True, device_id=None, precision="full", no_half=True))
    model = load()
    unet = model.pipe.unet
    assert setup.load_components(model.info) == {}
    setup.on_model_loaded(model)
    applied = setup.applied[model.pipe].quantization
    assert applied is not None and applied.routes == {"unet": "by hand: single-file checkpoint"}
    assert model.pipe.unet is unet and applied.originals == {}  # in place: no second copy of the weights
    assert getattr(model.pipe.unet, "hf_quantizer", None) is None
    assert _linear_classes(model.pipe.unet) == LIBRARY_CLASSES["quanto-int8"]
    _within("quanto-int8", generate(model), reference)


def test_kept_original_is_put_back_exactly(loaded, generate, reference) -> None:
    unet = loaded.pipe.unet
    applied = quantize_components(loaded, "quanto-int8", components=("unet",), keep_original=True)
    assert loaded.pipe.unet is not unet and applied.routes == {"unet": ROUTE_DIFFUSERS}
    assert loaded.pipe.unet.hf_quantizer is not None
    applied.remove()
    assert loaded.pipe.unet is unet
    assert np.array_equal(generate(loaded), reference)


def test_an_unreadable_cache_is_quantized_again_and_replaced(tiny_models_dir: Path, tmp_path: Path) -> None:
    manager, setup = _production(tiny_models_dir, tmp_path, "quanto-int8")
    info = manager.resolve("tiny-sd")
    manager.catalog.ensure_hash(info)
    broken = tmp_path / "cache" / "quantized" / f"{info.sha256[:16]}-quanto-int8-float32" / "unet"  # type: ignore[index]
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    model = manager.ensure_loaded("tiny-sd")
    applied = setup.applied[model.pipe].quantization
    assert applied is not None and applied.routes == {"unet": ROUTE_DIFFUSERS}
    assert '"quant_method": "quanto"' in (broken / "config.json").read_text(encoding="utf-8")
    assert (broken / "diffusion_pytorch_model.safetensors").is_file()


def test_a_failed_quantization_is_recorded_and_the_model_runs_unquantized(
        tiny_models_dir: Path, tmp_path: Path, generate, reference, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(compute_dtype: torch.dtype) -> Any:
        raise ValueError("no such quantization config")

    monkeypatch.setattr(get_method("quanto-int8"), "diffusers_config", refuse)
    manager, setup = _production(tiny_models_dir, tmp_path, "quanto-int8")
    model = manager.ensure_loaded("tiny-sd")
    record = setup.applied[model.pipe]
    assert record.quantization is None
    assert record.errors == ["quantization quanto-int8: no such quantization config"]
    assert getattr(model.pipe.unet, "hf_quantizer", None) is None
    assert np.array_equal(generate(model), reference)


def test_methods_are_registered_with_their_diffusers_configs() -> None:
    from diffusers import BitsAndBytesConfig, QuantoConfig, TorchAoConfig

    assert {"bnb-int8", "bnb-nf4", "bnb-fp4", "quanto-int8", "quanto-int4", "quanto-float8",
            "torchao-int8"} == set(METHODS)
    expected: dict[str, tuple[type[Any], dict[str, Any]]] = {
        "bnb-int8": (BitsAndBytesConfig, {"load_in_8bit": True}),
        "bnb-nf4": (BitsAndBytesConfig, {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}),
        "bnb-fp4": (BitsAndBytesConfig, {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4"}),
        "quanto-int8": (QuantoConfig, {"weights_dtype": "int8"}),
        "quanto-int4": (QuantoConfig, {"weights_dtype": "int4"}),
        "quanto-float8": (QuantoConfig, {"weights_dtype": "float8"}),
        "torchao-int8": (TorchAoConfig, {}),
    }
    for name, (config_class, fields) in expected.items():
        method = get_method(name)
        if not method.is_available()[0]:
            continue
        config = method.diffusers_config(torch.float32)
        assert isinstance(config, config_class), name
        assert {key: getattr(config, key) for key in fields} == fields, name
    assert type(get_method("torchao-int8").diffusers_config(torch.float32).quant_type).__name__ == \
        "Int8WeightOnlyConfig"
    assert {name for name, method in METHODS.items() if method.cacheable} == set(METHODS) - {"torchao-int8"}


def test_size_report_counts_packed_storage(loaded) -> None:
    plain = size_of(loaded.pipe.unet)
    assert plain.quantized_layers == 0
    assert plain.bytes == sum(p.numel() * 4 for p in loaded.pipe.unet.parameters()) + sum(
        b.numel() * b.element_size() for b in loaded.pipe.unet.buffers())


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


def test_diffusers_single_file_loader_does_not_quantize_yet(tmp_path: Path) -> None:
    """Why single files are quantized by hand: diffusers' single-file model loader, given a quantization config,
    fails (quanto: weights left on the meta device) or returns plain weights (torchao). When this test fails,
    diffusers has fixed it, and single files can load quantized through it like folders."""
    from diffusers import UNet2DConditionModel

    from modules.models.families import FAMILIES
    from tests.tiny_pipelines import save_tiny_checkpoints

    paths = save_tiny_checkpoints(FAMILIES["sd15"], tmp_path)
    kwargs = {"config": str(paths["config"]), "subfolder": "unet", "torch_dtype": torch.float32,
              "local_files_only": True}
    with pytest.raises(NotImplementedError, match="meta tensor"):
        UNet2DConditionModel.from_single_file(str(paths["single"]), quantization_config=get_method(
            "quanto-int8").diffusers_config(torch.float32), **kwargs)
    if get_method("torchao-int8").is_available()[0]:
        unet = UNet2DConditionModel.from_single_file(str(paths["single"]), quantization_config=get_method(
            "torchao-int8").diffusers_config(torch.float32), **kwargs)
        assert _linear_classes(unet) == {"Linear", "Parameter"} and size_of(unet).quantized_layers == 0
