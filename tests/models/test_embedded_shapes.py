"""The drawn training world and the pixel scorer agree with each other and are reproducible."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tools.embedded.scoring import adherence, classify_shape, score_image, score_images
from tools.embedded.shapes import (
    COLOURS,
    PALETTE,
    SHAPES,
    ShapeSpec,
    draw,
    draw_batch,
    prompt_for,
    random_batch,
    random_spec,
)


def test_vocabulary_covers_the_required_words() -> None:
    for colour in ("red", "green", "blue", "yellow", "orange", "purple", "white", "black"):
        assert colour in COLOURS
    assert set(SHAPES) == {"circle", "square", "triangle"}


def test_drawing_is_deterministic_for_a_seed() -> None:
    first = random_batch(random.Random(7), 6)
    second = random_batch(random.Random(7), 6)
    assert first[0] == second[0]
    assert torch.equal(first[1], second[1])
    other = random_batch(random.Random(8), 6)
    assert not torch.equal(first[1], other[1])


def test_shape_colour_differs_from_background_and_shape_stays_inside() -> None:
    rng = random.Random(3)
    for _ in range(100):
        spec = random_spec(rng)
        assert spec.colour != spec.background
        pixels = np.asarray(draw(spec))
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        assert (border == PALETTE[spec.background]).all()


def test_same_colour_for_shape_and_background_is_rejected() -> None:
    with pytest.raises(ValueError, match="differ"):
        ShapeSpec("circle", "red", "red")


def test_prompt_wording() -> None:
    spec = ShapeSpec("circle", "red", "blue")
    assert prompt_for(spec) == "a red circle on a blue background"
    small = ShapeSpec("triangle", "yellow", "purple", size="small", radius=8)
    assert prompt_for(small) == "a small yellow triangle on a purple background"
    assert prompt_for(small, with_size=False) == "a yellow triangle on a purple background"


def test_batch_tensor_layout_and_range() -> None:
    specs = [ShapeSpec("square", "white", "black"), ShapeSpec("circle", "green", "orange")]
    batch = draw_batch(specs)
    assert batch.shape == (2, 3, 64, 64)
    assert batch.dtype == torch.float32
    assert batch.min() >= -1.0 and batch.max() <= 1.0
    assert torch.allclose(batch[0, :, 0, 0], torch.tensor([20, 20, 20]) / 127.5 - 1)


def test_scorer_reads_the_drawings_themselves() -> None:
    rng = random.Random(11)
    specs = [random_spec(rng) for _ in range(150)]
    result = adherence(score_images([draw(spec) for spec in specs], specs))
    assert result == {"colour": 100.0, "background": 100.0, "shape": 100.0}


def test_scorer_notices_wrong_pictures() -> None:
    spec = ShapeSpec("circle", "red", "blue", centre=(30.0, 34.0), radius=14.0)
    wrong = ShapeSpec("square", "blue", "red", centre=(30.0, 34.0), radius=14.0)
    score = score_image(draw(wrong), spec)
    assert (score.shape, score.colour, score.background) == ("square", "blue", "red")
    assert not (score.shape_ok or score.colour_ok or score.background_ok)
    blank = score_image(np.full((64, 64, 3), PALETTE["blue"], dtype=np.uint8), spec)
    assert blank.background_ok and not blank.colour_ok and not blank.shape_ok


def test_classify_shape_on_ideal_masks() -> None:
    yy, xx = np.mgrid[0:40, 0:40]
    assert classify_shape((xx - 20) ** 2 + (yy - 20) ** 2 <= 15**2)[0] == "circle"
    assert classify_shape((abs(xx - 20) <= 12) & (abs(yy - 20) <= 12))[0] == "square"
    assert classify_shape((yy >= 5) & (abs(xx - 20) <= (yy - 5) / 2))[0] == "triangle"
    assert classify_shape(np.zeros((40, 40), dtype=bool))[0] is None
