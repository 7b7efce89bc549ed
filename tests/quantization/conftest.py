"""A tiny real pipeline loaded through the model manager, and Easel txt2img over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modules.core.settings import Options
from modules.devices.select import select_device
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.manager import LoadedModel, ModelManager
from modules.processing.params import Txt2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry


@pytest.fixture(scope="module")
def loaded(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    cache = HashCache(tmp_path_factory.mktemp("hashes") / "hashes.json")
    catalog = CheckpointCatalog(tiny_models_dir / "Stable-diffusion", cache)
    catalog.refresh()
    device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
    return ModelManager(catalog, device).ensure_loaded("tiny-sd")


def txt2img(model: LoadedModel, preprocessors: list | None = None, **fields: object) -> np.ndarray:
    """One 64x64 Easel txt2img (Euler, 3 steps, CFG 7, seed 7) as a uint8 array."""
    params = {"prompt": "a red circle", "negative_prompt": "blue", "steps": 3, "cfg_scale": 7.0, "width": 64,
              "height": 64, "seed": 7, "sampler_name": "Euler", **fields}
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model,
                          prompt_preprocessors=list(preprocessors or []))
    result = processor.process(ProcessingRun(Txt2ImgParams(**params), Options()))
    return np.stack([np.asarray(image) for image in result.images])


@pytest.fixture(scope="session")
def generate():
    return txt2img
