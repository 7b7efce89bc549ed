"""The stop checks inside long loops outside the denoiser: upscaler tiles, ControlNet preprocessors, faces.

Each loop is run with stop flags bound as the job runner binds them, and the flags flip after a given number of
units; the loop must raise ``JobCancelled`` before the next unit (and run normally with nothing bound).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.core import cancellation
from modules.core.errors import JobCancelled


class Flags:
    """Stop flags like a job context's: ``cancelled`` ends the job, ``interrupted`` only stops it early."""

    def __init__(self, *, cancelled: bool = False, interrupted: bool = False) -> None:
        self.cancelled = cancelled
        self.interrupted = interrupted

    def should_stop(self) -> bool:
        return self.cancelled or self.interrupted

    def check(self) -> None:
        if self.cancelled:
            raise JobCancelled("job")


def test_nothing_bound_is_a_no_op() -> None:
    assert not cancellation.bound() and not cancellation.stop_requested() and not cancellation.abort_requested()
    cancellation.checkpoint()
    cancellation.check_abort()


def test_interrupt_stops_units_but_does_not_abort() -> None:
    with cancellation.bound_to(Flags(interrupted=True)):
        assert cancellation.stop_requested() and not cancellation.abort_requested()
        cancellation.check_abort()
        with pytest.raises(JobCancelled):
            cancellation.checkpoint()
    with cancellation.bound_to(Flags(cancelled=True)):
        assert cancellation.abort_requested()
        with pytest.raises(JobCancelled):
            cancellation.check_abort()
    assert not cancellation.bound()


def test_upscaler_tiles_stop_within_one_tile() -> None:
    from modules.upscalers.models import tiled_upscale

    flags = Flags()
    tiles: list[tuple[int, ...]] = []

    def apply(part: torch.Tensor) -> torch.Tensor:
        tiles.append(tuple(part.shape))
        if len(tiles) == 2:
            flags.cancelled = True
        return torch.nn.functional.interpolate(part, scale_factor=2)

    pixels = torch.rand(1, 3, 64, 64)
    whole = tiled_upscale(apply, pixels, 2, 16, 4)  # nothing bound: every tile runs
    count = len(tiles)
    assert whole.shape == (1, 3, 128, 128) and count > 9
    tiles.clear()
    flags.cancelled = False
    with cancellation.bound_to(flags), pytest.raises(JobCancelled):
        tiled_upscale(apply, pixels, 2, 16, 4)
    assert len(tiles) == 2


def test_preprocessor_does_not_start_after_a_stop() -> None:
    from modules.controlnet.preprocessors import build_registry, run_preprocessor

    registry = build_registry()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    assert run_preprocessor(registry, "canny", image).size == (32, 32)
    with cancellation.bound_to(Flags(cancelled=True)), pytest.raises(JobCancelled):
        run_preprocessor(registry, "canny", image)


def test_face_restoration_stops_between_faces(tmp_path: Path) -> None:
    from modules.faces.detection import FaceBox
    from modules.faces.restorer import SpandrelFaceRestorer
    from modules.upscalers.models import ModelFile

    flags = Flags()
    restored: list[int] = []

    class Restorer(SpandrelFaceRestorer):
        def _restore_face(self, network: torch.nn.Module, call: object, region: np.ndarray,
                          weight: float) -> np.ndarray:
            restored.append(region.shape[0])
            flags.interrupted = True
            return region

    class Boxes:
        def detect(self, image: Image.Image) -> list[FaceBox]:
            return [FaceBox(0, 0, 20, 20), FaceBox(30, 30, 50, 50), FaceBox(60, 0, 80, 20)]

    descriptor = type("Descriptor", (), {"architecture": type("Arch", (), {"id": "GFPGAN"}),
                                         "model": torch.nn.Identity()})()
    restorer = Restorer("GFPGAN", ModelFile("face", tmp_path / "face.safetensors"), lambda file: descriptor,
                        Boxes(), margin=0.0)
    with cancellation.bound_to(flags), pytest.raises(JobCancelled):
        restorer.restore(Image.new("RGB", (96, 64)))
    assert len(restored) == 1
