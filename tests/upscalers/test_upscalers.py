"""Upscalers: built-in resamplers, latent modes, a tiny ESRGAN model through spandrel, tiled runs, listing."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.core.errors import UserInputError
from modules.upscalers.latent import LATENT_MODES, upscale_latents
from modules.upscalers.models import guess_scale, import_spandrel, tiled_upscale
from modules.upscalers.service import UpscalerService


def _save_tiny_esrgan(path: Path, scale: int) -> Path:
    from safetensors.torch import save_file

    spandrel = import_spandrel()
    assert spandrel is not None
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    net = ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale)
    save_file(net.state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def esrgan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ESRGAN")
    _save_tiny_esrgan(folder / "2x-tiny.safetensors", 2)
    _save_tiny_esrgan(folder / "4x-tiny.safetensors", 4)
    torch.save({"x": torch.zeros(1)}, folder / "4x-pickled.pth")
    return folder


def _image(width: int = 24, height: int = 16) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_spandrel_import_leaves_no_torchvision_behind() -> None:
    import importlib.util

    import_spandrel()
    assert "spandrel" in sys.modules
    assert "torchvision" not in sys.modules or importlib.util.find_spec("torchvision") is not None


def test_listing_has_builtins_models_and_skips_pickle(esrgan_dir: Path) -> None:
    service = UpscalerService(esrgan_dir)
    items = {item["name"]: item for item in service.list()}
    assert list(items)[:3] == ["None", "Lanczos", "Nearest"]
    assert {"2x-tiny", "4x-tiny"} <= set(items)
    assert "4x-pickled" not in items
    assert items["2x-tiny"]["scale"] == 2
    assert items["4x-tiny"]["model_path"].endswith("4x-tiny.safetensors")
    assert set(items["Lanczos"]) == {"name", "model_name", "model_path", "model_url", "scale"}
    assert [mode["name"] for mode in service.latent_modes()] == list(LATENT_MODES)
    with_pickle = UpscalerService(esrgan_dir, allow_pickle=True)
    assert "4x-pickled" in {item["name"] for item in with_pickle.list()}


@pytest.mark.parametrize("name", ["None", "Lanczos", "Nearest", "2x-tiny", "4x-tiny"])
@pytest.mark.parametrize("scale", [2.0, 3.0])
def test_every_upscaler_returns_the_asked_size(esrgan_dir: Path, name: str, scale: float) -> None:
    service = UpscalerService(esrgan_dir)
    result = service.upscale(_image(), scale, name)
    assert result.size == (int(24 * scale), int(16 * scale))


def test_model_upscaler_runs_the_network(esrgan_dir: Path) -> None:
    """The tiny ESRGAN's output is not a plain resize of the input: the network really ran."""
    service = UpscalerService(esrgan_dir)
    image = _image()
    ours = np.asarray(service.upscale(image, 2.0, "2x-tiny"), dtype=np.int16)
    lanczos = np.asarray(service.upscale(image, 2.0, "Lanczos"), dtype=np.int16)
    assert np.abs(ours - lanczos).mean() > 5


def test_tiled_model_run_matches_whole_image_run(esrgan_dir: Path) -> None:
    spandrel = import_spandrel()
    model = spandrel.ModelLoader().load_from_file(str(esrgan_dir / "2x-tiny.safetensors")).eval()
    pixels = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        whole = model(pixels)
        tiled = tiled_upscale(lambda part: model(part), pixels, 2, tile=24, overlap=8)
    assert tiled.shape == whole.shape
    # A 1-block RRDB sees only a few pixels around each output, so interior overlaps agree closely.
    assert (tiled - whole).abs().mean() < 0.02


def test_tiled_identity_is_exact() -> None:
    pixels = torch.rand(1, 3, 50, 70)
    out = tiled_upscale(lambda part: torch.nn.functional.interpolate(part, scale_factor=2, mode="nearest"),
                        pixels, 2, tile=16, overlap=4)
    expected = torch.nn.functional.interpolate(pixels, scale_factor=2, mode="nearest")
    assert torch.allclose(out, expected, atol=1e-5)


def test_unknown_upscaler_names_the_field(esrgan_dir: Path) -> None:
    with pytest.raises(UserInputError) as info:
        UpscalerService(esrgan_dir).upscale(_image(), 2, "Nope", field="upscaler_1")
    assert info.value.field == "upscaler_1"


@pytest.mark.parametrize("mode", list(LATENT_MODES))
def test_latent_modes_resize(mode: str) -> None:
    latents = torch.randn(1, 4, 8, 8)
    assert upscale_latents(latents, (16, 12), mode).shape == (1, 4, 16, 12)


def test_guess_scale() -> None:
    assert guess_scale("4x-UltraSharp") == 4
    assert guess_scale("RealESRGAN_x2plus") == 2
    assert guess_scale("something") == 4
