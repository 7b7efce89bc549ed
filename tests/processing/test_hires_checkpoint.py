"""``hr_checkpoint_name``: the hires second pass runs on another checkpoint, the first pass (and the next batch)
on the run's own, the manager ends where the options say; same-checkpoint values switch nothing; unknown names
are refused naming the field, before any work."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from modules.core.errors import UserInputError
from modules.core.settings import CmdFlags, Options, Settings
from modules.devices.select import select_device
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.manager import ModelManager
from modules.processing.image_store import ImageStore
from modules.processing.infotext import parse_infotext
from modules.processing.params import Txt2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry
from modules.processing.service import GenerationService
from tests.conftest import build_tiny_sd

BASE = {"prompt": "a red circle", "steps": 2, "width": 32, "height": 32, "seed": 7, "cfg_scale": 5.0,
        "sampler_name": "Euler", "enable_hr": True, "hr_scale": 2.0, "denoising_strength": 0.6,
        "hr_second_pass_steps": 2}


@dataclass
class Setup:
    service: GenerationService
    manager: ModelManager
    loads: list[str]  # model names, in the order the manager switched to them


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hr-checkpoint")
    build_tiny_sd(root / "models" / "Stable-diffusion" / "tiny-a", seed=0)
    build_tiny_sd(root / "models" / "Stable-diffusion" / "tiny-b", seed=1)
    settings = Settings(CmdFlags(data_dir=root / "data", models_dir=root / "models"),
                        Options(sd_model_checkpoint="tiny-a"))
    settings.data_paths.ensure()
    catalog = CheckpointCatalog(settings.model_paths.stable_diffusion, HashCache(settings.data_paths.hash_cache))
    catalog.refresh()
    manager = ModelManager(catalog, select_device(use_cpu=True, device_id=None, precision="full", no_half=True))
    service = GenerationService(settings=settings, manager=manager, samplers=build_default_registry(),
                                image_store=ImageStore(settings.data_paths.outputs, lambda: settings.options),
                                results_root=settings.data_paths.job_results)
    loads: list[str] = []
    manager.on_model_loaded(lambda model: loads.append(model.info.model_name))
    yield Setup(service, manager, loads)
    torch.set_num_threads(threads)


def _generate(setup: Setup, **fields: Any) -> Any:
    setup.manager.ensure_loaded("tiny-a")
    setup.loads.clear()
    return setup.service.generate(Txt2ImgParams(**{**BASE, **fields}))


def _pixels(image: Any) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_second_pass_runs_on_the_hires_checkpoint_and_switches_back(setup: Setup) -> None:
    main = setup.manager.ensure_loaded("tiny-a")
    result = _generate(setup, hr_checkpoint_name="tiny-b", n_iter=2)
    # batch 1: first pass on a, second on b; batch 2 the same; then back to a for the next job
    assert setup.loads == ["tiny-b", "tiny-a", "tiny-b", "tiny-a"]
    # a was parked, not reloaded: the run (and its per-run patches such as LoRA) got the same pipeline back, and
    # nothing stays parked after the run with sd_checkpoint_cache 0
    assert setup.manager.current is main
    assert not setup.manager._cpu_cache
    assert [image.size for image in result.images] == [(64, 64), (64, 64)]
    params = parse_infotext(result.infotexts[1])
    assert params["Hires checkpoint"] == setup.manager.catalog.get("tiny-b").title
    assert params["Model"] == "tiny-a"

    same = _generate(setup, hr_checkpoint_name="Use same checkpoint", n_iter=2)
    assert np.abs(_pixels(result.images[0]) - _pixels(same.images[0])).mean() > 1.0  # b made the second pass
    # the second batch's first pass ran on a again: it equals a single run of that seed
    alone = _generate(setup, hr_checkpoint_name="tiny-b", seed=8)
    assert np.array_equal(_pixels(result.images[1]), _pixels(alone.images[0]))


@pytest.mark.parametrize("same", [None, "", "Use same checkpoint"])
def test_same_checkpoint_values_switch_nothing(setup: Setup, same: str | None) -> None:
    result = _generate(setup, hr_checkpoint_name=same)
    assert setup.loads == []
    assert result.images[0].size == (64, 64)
    assert "Hires checkpoint" not in result.infotexts[0]


def test_the_hires_checkpoint_may_be_named_by_title(setup: Setup) -> None:
    title = setup.manager.catalog.get("tiny-b").title
    result = _generate(setup, hr_checkpoint_name=title)
    assert setup.loads == ["tiny-b", "tiny-a"]
    assert parse_infotext(result.infotexts[0])["Hires checkpoint"] == title


def test_unknown_hires_checkpoint_is_refused_before_any_work(setup: Setup) -> None:
    with pytest.raises(UserInputError) as info:
        _generate(setup, hr_checkpoint_name="nope")
    assert info.value.field == "hr_checkpoint_name"
    assert "unknown checkpoint 'nope'; available: tiny-a" in info.value.reason
    assert setup.loads == []
    # without enable_hr the name is not used, so it is not checked (A1111 ignores it too)
    _generate(setup, hr_checkpoint_name="nope", enable_hr=False)


def test_processor_names_the_field_when_the_provider_refuses(setup: Setup) -> None:
    """Direct processor use (scripts, other callers) gets the same field name from the second pass."""
    setup.manager.ensure_loaded("tiny-a")
    processor = Processor(samplers=build_default_registry(), model_provider=setup.service._model_for)
    run = ProcessingRun(Txt2ImgParams(**{**BASE, "hr_checkpoint_name": "nope"}), setup.service.settings.options)
    with pytest.raises(UserInputError) as info:
        processor.process(run)
    assert info.value.field == "hr_checkpoint_name"
    assert info.value.reason.startswith("unknown checkpoint 'nope'")
    assert setup.manager.current is not None and setup.manager.current.info.model_name == "tiny-a"
