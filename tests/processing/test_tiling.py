"""Tiling: circular padding makes the generated picture wrap around, and the patch is undone after the run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modules.core.settings import Options
from modules.processing import tiling
from modules.processing.params import Txt2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry


@pytest.fixture(scope="module")
def model(loaded):
    return loaded


def _generate(model, tiled: bool) -> tuple[np.ndarray, str]:
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model)
    run = ProcessingRun(Txt2ImgParams(prompt="a red circle", steps=1, width=16, height=16, seed=3, tiling=tiled,
                                      sampler_name="Euler"), Options())
    result = processor.process(run)
    return np.asarray(result.images[0], dtype=np.float32), result.infotexts[0]


def _padding_modes(model) -> list[str]:
    return [layer.padding_mode for part in (model.pipe.unet, model.pipe.vae) for layer in part.modules()
            if isinstance(layer, torch.nn.Conv2d)]


def _denoise(model, noise: torch.Tensor) -> np.ndarray:
    """txt2img through Easel's loop from given initial noise (a deterministic Euler schedule)."""
    from diffusers import EulerDiscreteScheduler

    from modules.processing import engine
    from modules.processing.text import TextConditioner

    pipe = model.pipe
    cond = TextConditioner(pipe).batch(["a red circle"], [""], 2)
    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(2)
    request = engine.DenoiseRequest(latents=noise * scheduler.init_noise_sigma, timesteps=list(scheduler.timesteps),
                                    uncond=cond.uncond, conds=cond.conds, cfg_scale=5.0,
                                    generators=[torch.Generator().manual_seed(0)])
    with torch.no_grad():
        latents = engine.denoise(pipe.unet, scheduler, request)
        image = engine.decode_latents(pipe.vae, pipe.image_processor, latents)[0]
    return np.asarray(image, dtype=np.float32)


def test_tiling_makes_left_and_right_edges_continuous(model) -> None:
    """With tiling, the right edge is the left edge's neighbour: shifting the start noise by half the width
    shifts the picture by half its width, so the seam |col0 - col-1| becomes an ordinary pair of neighbouring
    columns in the middle of the shifted picture. Without tiling the same shift leaves a visible edge.

    (The tiny random model paints noise-like pictures, so "continuous" is measured against what the model itself
    draws between neighbouring columns, not against a smoothness threshold.)
    """
    noise = torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(5))
    shifted_noise = torch.roll(noise, 12, dims=-1)
    half = 24  # pixels: 12 latent columns x VAE scale 2
    with tiling.circular_padding(model.pipe.unet, model.pipe.vae):
        tiled = _denoise(model, noise)
        tiled_shifted = _denoise(model, shifted_noise)
    plain = _denoise(model, noise)
    plain_shifted = _denoise(model, shifted_noise)

    assert np.abs(tiled_shifted - np.roll(tiled, half, axis=1)).mean() < 1.0
    assert np.abs(plain_shifted - np.roll(plain, half, axis=1)).mean() > 5.0

    seam = np.abs(tiled[:, 0] - tiled[:, -1])
    inner = np.abs(tiled_shifted[:, half] - tiled_shifted[:, half - 1])  # the same seam, drawn as neighbours
    assert np.abs(seam - inner).mean() < 1.5


def test_tiling_run_is_reversible_and_labelled(model) -> None:
    before = _padding_modes(model)
    assert set(before) == {"zeros"}
    _, info = _generate(model, tiled=True)
    assert _padding_modes(model) == before, "the circular padding leaked past the run"
    assert "Tiling: True" in info


def test_context_manager_restores_on_error() -> None:
    conv = torch.nn.Conv2d(1, 1, 3, padding=1)
    with pytest.raises(RuntimeError), tiling.circular_padding(torch.nn.Sequential(conv)):
        assert conv.padding_mode == "circular"
        raise RuntimeError("boom")
    assert conv.padding_mode == "zeros"
