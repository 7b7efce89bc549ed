"""The embedded model (easel-shapes-v1) does what its prompt, guidance, negative prompt, sampler and img2img
strength say, judged from pixels by the same scorer as ``cli/eval_adherence.py``, through Easel's Processor.

Prompt sets are small to keep the suite fast, so each threshold is the 200-prompt measurement in the model
card minus a margin for a small sample (a 16-prompt set moves in steps of 6.25 points).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tools.embedded.evaluation import SAMPLERS, EmbeddedRunner, evaluate, has_weights, prompt_set
from tools.embedded.scoring import score_image
from tools.embedded.shapes import ShapeSpec, draw, prompt_for, random_spec

pytestmark = pytest.mark.skipif(not has_weights(), reason="embedded model easel-shapes-v1 not present")

SAMPLER_SET = 24
# Per-sampler minimums (percent) on SAMPLER_SET prompts at 20 steps, CFG 7. The model card's 200-prompt figures are
# colour 95.5-97, background 100, shape 94-96 for every sampler; a 24-prompt set moves in steps of ~4 points, and
# this one scores colour 92-96 and shape 83-92 with the shipped export.
MIN_COLOUR, MIN_BACKGROUND, MIN_SHAPE = 87.0, 95.0, 75.0


@pytest.fixture(scope="module")
def runner() -> EmbeddedRunner:
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    return EmbeddedRunner(batch_size=16)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_adherence_per_sampler(runner: EmbeddedRunner, sampler: str) -> None:
    result, _ = evaluate(runner, prompt_set(SAMPLER_SET, seed=7), sampler=sampler, steps=20, cfg=7.0)
    assert result["colour"] >= MIN_COLOUR, result
    assert result["background"] >= MIN_BACKGROUND, result
    assert result["shape"] >= MIN_SHAPE, result


def test_guidance_raises_adherence(runner: EmbeddedRunner) -> None:
    """Guidance is what makes shapes follow the prompt (200 prompts: shape 94% at CFG 7, 83.5% at CFG 1)."""
    specs = prompt_set(40, seed=11)
    guided, _ = evaluate(runner, specs, cfg=6.0, steps=20)
    unguided, _ = evaluate(runner, specs, cfg=1.0, steps=20)
    assert guided["shape"] >= unguided["shape"] + 10.0, (guided, unguided)
    assert guided["colour"] + guided["background"] >= unguided["colour"] + unguided["background"] - 5.0


def test_negative_prompt_removes_a_colour(runner: EmbeddedRunner) -> None:
    """"a circle on a blue background" leaves the colour to the model; the colour it picks most often (yellow in
    15 of these 40 seeds for the shipped export, red in 3) is gone from every seed once it is the negative prompt,
    and the background stays blue. (The shipped export mostly leaves the background empty instead: 39 of 40.)"""
    seeds = list(range(300, 340))
    prompts = ["a circle on a blue background"] * len(seeds)
    spec = ShapeSpec(shape="circle", colour="red", background="blue")  # only its background is compared
    plain = [score_image(image, spec).colour for image in runner.txt2img(prompts, seeds, steps=20, cfg=7.0)]
    favourite = max(filter(None, set(plain)), key=plain.count)
    assert plain.count(favourite) >= 5, f"the check needs one colour in several seeds, got {plain}"
    negated = runner.txt2img(prompts, seeds, steps=20, cfg=7.0, negative_prompts=[favourite] * len(seeds))
    scores = [score_image(image, spec) for image in negated]
    assert not any(s.colour == favourite for s in scores), (favourite, [s.colour for s in scores])
    assert all(s.background_ok for s in scores)


def _mean_rgb_distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def test_img2img_strength(runner: EmbeddedRunner) -> None:
    """Strength 0.2 keeps the init picture (its background always, its shape colour mostly) although the prompt
    asks for other colours; strength 1.0 draws what the prompt asks instead."""
    rng = random.Random(3)
    originals = [random_spec(rng) for _ in range(12)]
    asked = [random_spec(rng) for _ in range(12)]
    init = [draw(spec) for spec in originals]
    prompts = [prompt_for(spec) for spec in asked]
    seeds = list(range(500, 512))
    light = runner.img2img(init, prompts, seeds, strength=0.2)
    full = runner.img2img(init, prompts, seeds, strength=1.0)
    kept = [score_image(image, spec) for image, spec in zip(light, originals, strict=True)]
    assert sum(s.background_ok for s in kept) >= 11, kept
    assert sum(s.colour_ok for s in kept) >= 6, kept
    assert np.mean([_mean_rgb_distance(a, b) for a, b in zip(light, init, strict=True)]) < 15.0
    followed = [score_image(image, spec) for image, spec in zip(full, asked, strict=True)]
    assert sum(s.background_ok and s.colour_ok for s in followed) >= 10, followed
    assert np.mean([_mean_rgb_distance(a, b) for a, b in zip(full, init, strict=True)]) > 50.0


def test_same_seed_same_pixels(runner: EmbeddedRunner) -> None:
    prompts = ["a yellow triangle on a purple background", "a small red square on a white background"]
    first = runner.txt2img(prompts, [42, 43], steps=12)
    second = runner.txt2img(prompts, [42, 43], steps=12)
    other = runner.txt2img(prompts, [44, 45], steps=12)
    for a, b, c in zip(first, second, other, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_default_prompt_is_recognisable(runner: EmbeddedRunner) -> None:
    """The README's example prompt: most seeds show a yellow triangle on purple."""
    spec = ShapeSpec(shape="triangle", colour="yellow", background="purple")
    images = runner.txt2img([prompt_for(spec)] * 8, list(range(8)), steps=20)
    scores: list[Any] = [score_image(image, spec) for image in images]
    assert sum(s.background_ok and s.colour_ok for s in scores) >= 7, scores
    assert sum(s.shape_ok for s in scores) >= 7, scores
