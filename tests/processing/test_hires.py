"""Hires fix: the second pass makes the upscaled size, changes the picture, and writes A1111's infotext keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modules.core.settings import Options
from modules.devices.select import select_device
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.manager import ModelManager
from modules.processing.hires import hires_size
from modules.processing.infotext import parse_infotext
from modules.processing.params import Txt2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry
from modules.upscalers.service import UpscalerService

BASE = {"prompt": "a red circle on a blue background", "steps": 2, "width": 32, "height": 32, "seed": 7,
        "cfg_scale": 5.0, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def manager(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelManager:
    catalog = CheckpointCatalog(tiny_models_dir / "Stable-diffusion",
                                HashCache(tmp_path_factory.mktemp("cache") / "hashes.json"))
    catalog.refresh()
    return ModelManager(catalog, select_device(use_cpu=True, device_id=None, precision="full", no_half=True))


def generate(manager: ModelManager, upscalers_dir: Path | None = None, **fields: object):
    model = manager.ensure_loaded("tiny-sd")
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model)
    if upscalers_dir is not None:
        processor.upscalers = UpscalerService(upscalers_dir).registry
    run = ProcessingRun(Txt2ImgParams(**{**BASE, **fields}), Options())
    return processor.process(run)


@pytest.fixture(scope="module")
def plain(manager: ModelManager):
    return generate(manager, hr_scale=2.0)


def test_size_rules() -> None:
    assert hires_size(64, 64, 2.0, 0, 0) == hires_size(64, 64, 2.0, 128, 0)
    assert (hires_size(64, 48, 2.0, 0, 0).width, hires_size(64, 48, 2.0, 0, 0).height) == (128, 96)
    only_x = hires_size(64, 48, 2.0, 160, 0)
    assert (only_x.width, only_x.height) == (160, 120)
    only_y = hires_size(64, 48, 2.0, 0, 96)
    assert (only_y.width, only_y.height) == (128, 96)
    both = hires_size(64, 48, 2.0, 128, 128)  # wider source: cover the height, crop the width
    assert (both.width, both.height, both.upscale_width, both.upscale_height) == (128, 128, 168, 128)


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_returns_the_upscaled_size_with_a_second_pass(manager: ModelManager, plain, upscaler: str) -> None:
    result = generate(manager, enable_hr=True, hr_scale=2.0, hr_upscaler=upscaler, denoising_strength=0.6,
                      hr_second_pass_steps=2)
    image = result.images[0]
    assert image.size == (64, 64)
    # The second pass changed the picture: it is not just the first pass resized.
    resized = np.asarray(plain.images[0].resize((64, 64)), dtype=np.int16)
    assert np.abs(np.asarray(image, dtype=np.int16) - resized).mean() > 1.0
    params = parse_infotext(result.infotexts[0])
    assert params["Size"] == "32x32"
    assert params["Hires upscaler"] == upscaler
    assert float(params["Hires upscale"]) == 2.0
    assert params["Hires steps"] == "2" or params["Hires steps"] == 2
    assert float(params["Denoising strength"]) == 0.6


def test_hires_with_resize_prompt_and_sampler(manager: ModelManager) -> None:
    result = generate(manager, enable_hr=True, hr_resize_x=48, hr_resize_y=0, hr_upscaler="Nearest",
                      hr_sampler_name="DPM++ 2M", hr_prompt="a green square", hr_negative_prompt="red",
                      denoising_strength=0.5)
    assert result.images[0].size == (48, 48)
    params = parse_infotext(result.infotexts[0])
    assert params["Hires resize"] == "48x0"
    assert params["Hires sampler"] == "DPM++ 2M"
    assert params["Hires prompt"] == "a green square"
    assert params["Hires negative prompt"] == "red"


def test_hires_with_esrgan_model(manager: ModelManager, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from modules.upscalers.models import import_spandrel

    import_spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    save_file(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=2).state_dict(),
              str(tmp_path / "2x-tiny.safetensors"))
    result = generate(manager, tmp_path, enable_hr=True, hr_scale=1.5, hr_upscaler="2x-tiny", denoising_strength=0.5)
    assert result.images[0].size == (48, 48)
    assert parse_infotext(result.infotexts[0])["Hires upscaler"] == "2x-tiny"


def test_without_enable_hr_nothing_changes(plain) -> None:
    assert plain.images[0].size == (32, 32)
    assert "Hires" not in plain.infotexts[0]
