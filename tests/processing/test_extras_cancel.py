"""Stopping an extras job inside a model upscaler's tiles: a cancel ends the job within one tile, an interrupt
keeps the images finished before it (A1111), both without waiting for the rest of the batch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from modules.core import cancellation
from modules.core.errors import JobCancelled
from modules.core.settings import CmdFlags, Options, Settings
from modules.processing.extras import ExtrasService
from modules.processing.image_store import ImageStore
from modules.upscalers import models
from modules.upscalers.service import UpscalerService
from tests.images import png_b64
from tests.upscalers.test_upscalers import _save_tiny_esrgan


class JobFlags:
    """The stop flags of a job context; the test's tile counter flips them after a given number of tiles."""

    def __init__(self) -> None:
        self.cancelled = self.interrupted = False

    def should_stop(self) -> bool:
        return self.cancelled or self.interrupted

    def check(self) -> None:
        if self.cancelled:
            raise JobCancelled("job")

    def report(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture()
def service(tmp_path: Path) -> ExtrasService:
    settings = Settings(CmdFlags(data_dir=tmp_path / "data", models_dir=tmp_path / "models"), Options())
    settings.data_paths.ensure()
    settings.model_paths.esrgan.mkdir(parents=True)
    _save_tiny_esrgan(settings.model_paths.esrgan / "2x-tiny.safetensors", 2)
    upscalers = UpscalerService(settings.model_paths.esrgan, tile_settings=lambda: (16, 4))
    return ExtrasService(settings=settings, upscalers=upscalers,
                         image_store=ImageStore(settings.data_paths.outputs, lambda: settings.options))


def _batch(count: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for _ in range(count)]
    return {"imageList": [{"data": png_b64(image), "name": f"{n}.png"} for n, image in enumerate(images)],
            "upscaler_1": "2x-tiny", "upscaling_resize": 2}


@pytest.mark.parametrize("stop", ["cancel", "interrupt"])
def test_a_stop_lands_within_one_upscaler_tile(service: ExtrasService, monkeypatch: pytest.MonkeyPatch,
                                               stop: str) -> None:
    flags = JobFlags()
    tiles = [0]
    original = models._ramp
    per_image = 16  # 48x48 pixels in 16-pixel tiles overlapping by 4: 4 x 4 tiles

    def counted(*args: Any, **kwargs: Any) -> Any:  # called once per tile, after the network ran on it
        tiles[0] += 1
        if tiles[0] == per_image + 3:  # inside the second image
            setattr(flags, "cancelled" if stop == "cancel" else "interrupted", True)
        return original(*args, **kwargs)

    monkeypatch.setattr(models, "_ramp", counted)
    job = SimpleNamespace(id="job1", payload=_batch(5), kind="extras")
    with cancellation.bound_to(flags):
        if stop == "cancel":
            with pytest.raises(JobCancelled):
                service.run_job(job, flags)
        else:
            result = service.run_job(job, flags)
            assert result["interrupted"] is True and result["images"] == ["000.png"]
    assert tiles[0] == per_image + 3  # not one tile more after the stop
