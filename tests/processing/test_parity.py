"""The guard test of the processing core: Easel's txt2img equals plain diffusers ``pipe()`` pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modules.core.settings import Options
from modules.devices.select import select_device
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.manager import ModelManager
from modules.processing.params import Txt2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry


@pytest.fixture(scope="module")
def manager(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelManager:
    cache = HashCache(tmp_path_factory.mktemp("cache") / "hashes.json")
    catalog = CheckpointCatalog(tiny_models_dir / "Stable-diffusion", cache)
    catalog.refresh()
    device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
    return ModelManager(catalog, device)


def easel_txt2img(manager: ModelManager, **fields: object) -> list[np.ndarray]:
    model = manager.ensure_loaded("tiny-sd")
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model)
    run = ProcessingRun(Txt2ImgParams(**fields), Options())
    result = processor.process(run)
    return [np.asarray(image) for image in result.images]


@pytest.mark.parametrize("sampler, scheduler_class", [
    ("Euler", "EulerDiscreteScheduler"),
    ("Euler a", "EulerAncestralDiscreteScheduler"),
    ("DPM++ 2M", "DPMSolverMultistepScheduler"),
    ("DDIM", "DDIMScheduler"),
])
def test_txt2img_matches_plain_diffusers(manager: ModelManager, sampler: str, scheduler_class: str) -> None:

    ours = easel_txt2img(manager, prompt="a red circle on a blue background", negative_prompt="green",
                         steps=6, cfg_scale=7.0, width=64, height=64, seed=1234, sampler_name=sampler)
    pipe = manager.ensure_loaded("tiny-sd").pipe
    original = pipe.scheduler
    registry = build_default_registry()
    pipe.scheduler, _ = registry.build(original, sampler)
    assert pipe.scheduler.__class__.__name__ == scheduler_class
    try:
        reference = pipe("a red circle on a blue background", negative_prompt="green", num_inference_steps=6,
                         guidance_scale=7.0, width=64, height=64,
                         generator=torch.Generator().manual_seed(1234)).images[0]
    finally:
        pipe.scheduler = original
    assert np.array_equal(ours[0], np.asarray(reference)), "Easel's pixels differ from diffusers pipe()"


def test_batch_seeds_follow_a1111_rule(manager: ModelManager) -> None:
    """Image i of a batch uses seed+i: it equals a single-image run with that seed.

    Batched convolutions may take another CPU kernel than single ones, so the comparison allows rounding-level
    differences; images of different seeds differ by far more.
    """
    batch = easel_txt2img(manager, prompt="a cat", steps=3, width=64, height=64, seed=50, batch_size=2,
                          sampler_name="Euler a")
    single = easel_txt2img(manager, prompt="a cat", steps=3, width=64, height=64, seed=51, sampler_name="Euler a")
    same = np.abs(batch[1].astype(int) - single[0].astype(int))
    other = np.abs(batch[0].astype(int) - single[0].astype(int))
    assert same.max() <= 2 and same.mean() < 0.1, (same.max(), same.mean())
    assert other.mean() > 5


def test_a_job_resolves_the_execution_device_once_and_samples_without_grad(
        manager: ModelManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """diffusers' ``_execution_device`` walks every module of every component; one lookup per job serves the
    text encoding and the latents. The loop runs without autograd but not in inference mode (offload hooks move
    weights inside the forward), and its pixels stay diffusers'."""
    pipe = manager.ensure_loaded("tiny-sd").pipe
    original = type(pipe)._execution_device
    lookups: list[int] = []

    def counted(self: object) -> torch.device:
        lookups.append(1)
        return original.fget(self)  # type: ignore[no-any-return]

    monkeypatch.setattr(type(pipe), "_execution_device", property(counted))
    seen: list[tuple[bool, bool]] = []

    class Probe:
        def before_unet(self, state: object) -> None:
            seen.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))

        def after_unet(self, state: object) -> None: ...

        def after_cfg(self, state: object) -> None: ...

    model = manager.ensure_loaded("tiny-sd")
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model)
    run = ProcessingRun(Txt2ImgParams(prompt="a red circle", negative_prompt="green", steps=3, width=64,
                                      height=64, seed=7), Options())
    run.denoise_hooks.append(Probe())
    ours = np.asarray(processor.process(run).images[0])
    assert len(lookups) == 1
    assert seen == [(False, False)] * 3
    monkeypatch.undo()
    reference = pipe("a red circle", negative_prompt="green", num_inference_steps=3, guidance_scale=7.0, width=64,
                     height=64, generator=torch.Generator().manual_seed(7)).images[0]
    assert np.array_equal(ours, np.asarray(reference))
