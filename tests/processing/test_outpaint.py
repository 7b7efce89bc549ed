"""Outpainting: the canvas grows in the chosen directions, the new area is generated, the original is kept."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from modules.core.errors import UserInputError
from modules.core.settings import Options
from modules.processing.outpaint import grow_canvas, outpaint
from modules.processing.params import Img2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry


def _picture(width: int = 32, height: int = 24) -> Image.Image:
    image = Image.new("RGB", (width, height), (30, 70, 220))
    ImageDraw.Draw(image).ellipse((6, 4, 22, 20), fill=(220, 30, 30))
    return image


def test_grow_canvas_geometry_and_mask() -> None:
    plan = grow_canvas(_picture(), 16, ["left", "down"])
    assert plan.canvas.size == (48, 40) and plan.box == (16, 0)
    mask = np.asarray(plan.mask)
    assert mask[:24, 16:].max() == 0 and mask[:, :16].min() == 255 and mask[24:].min() == 255
    assert np.array_equal(np.asarray(plan.canvas)[:24, 16:], np.asarray(_picture()))
    odd = grow_canvas(_picture(30, 24), 5, ["right"])  # widths are padded up to a multiple of 8
    assert odd.canvas.size == (40, 24)


def test_bad_directions_and_pixels_name_their_field() -> None:
    with pytest.raises(UserInputError) as info:
        grow_canvas(_picture(), 8, ["sideways"])
    assert info.value.field == "direction"
    with pytest.raises(UserInputError) as info:
        grow_canvas(_picture(), 0, ["left"])
    assert info.value.field == "pixels"


@pytest.fixture(scope="module")
def model(loaded):
    return loaded


@pytest.mark.parametrize("fill", [1, 2])
def test_outpainting_grows_the_canvas_and_keeps_the_original(model, fill: int) -> None:
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model)
    run = ProcessingRun(Img2ImgParams(prompt="a red circle", steps=2, width=32, height=24, seed=4,
                                      denoising_strength=0.8, sampler_name="Euler"), Options())
    original = _picture()
    run.init_images = [original]
    result = outpaint(processor.process, run, 16, ["left", "right"], mask_blur=4, inpainting_fill=fill)
    image = np.asarray(result.images[0], dtype=np.int16)
    assert image.shape == (24, 64, 3)
    assert np.array_equal(image[:, 16:48], np.asarray(original, dtype=np.int16))
    # The new strips were generated, not left as the stretched edge colour.
    plan = grow_canvas(original, 16, ["left", "right"])
    assert np.abs(image[:, :12] - np.asarray(plan.canvas, dtype=np.int16)[:, :12]).mean() > 2
    assert "Outpaint directions: left right" in result.infotexts[0]
