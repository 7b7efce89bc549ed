"""``install(services)``: the configured backend and memory policy are applied to each model the manager loads."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from modules.backends.base import active_backend, restore_components
from modules.backends.setup import install
from modules.core.settings import CmdFlags, Options, Settings
from modules.devices.select import select_device
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.manager import ModelManager
from modules.processing.processor import Processor
from modules.processing.samplers import build_default_registry


def test_install_applies_backend_on_load_and_names_it(tiny_models_dir: Path, tmp_path: Path) -> None:
    settings = Settings(CmdFlags(data_dir=tmp_path / "data", precision="full", no_half=True),
                        Options(backend="onnxruntime"))
    catalog = CheckpointCatalog(tiny_models_dir / "Stable-diffusion", HashCache(tmp_path / "hashes.json"))
    catalog.refresh()
    device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
    manager = ModelManager(catalog, device)
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: manager.current)
    services = SimpleNamespace(settings=settings, device=device, manager=manager,
                               generation=SimpleNamespace(processor=processor), extensions={})
    setup = install(services)
    loaded = manager.ensure_loaded("tiny-sd")
    try:
        record = setup.applied[loaded.pipe]
        assert record.errors == [] and record.backend == "onnxruntime"
        assert active_backend(loaded.pipe) == "onnxruntime"
        assert record.memory.names == []  # CPU policy is SDPA only, and exported graphs skip attention patches
        assert list((tmp_path / "data" / "cache" / "onnx").glob("*/unet.onnx"))
        run = SimpleNamespace(sd_model=loaded, extra_generation_params={})
        processor.prompt_preprocessors[0](run)
        assert run.extra_generation_params == {"Backend": "onnxruntime"}
        assert services.extensions["execution"] is setup
    finally:
        restore_components(loaded.pipe)
