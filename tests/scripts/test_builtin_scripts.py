"""The built-in scripts through ``script_name`` + positional ``script_args``, as API clients use them."""

from __future__ import annotations

import sys
from typing import Any

from PIL import Image

from modules.processing.image_codec import encode_base64


def _xyz_module(easel: Any) -> Any:
    script = easel.scripts.runner(False).script("x/y/z plot")
    return sys.modules[type(script).__module__]


def test_xyz_value_ranges(easel: Any) -> None:
    xyz = _xyz_module(easel)
    steps, cfg, prompt_sr = xyz.find_axis("Steps"), xyz.find_axis(6), xyz.find_axis("Prompt S/R")
    assert xyz.parse_values(steps, "1-5") == [1, 2, 3, 4, 5]
    assert xyz.parse_values(steps, "1-10 (+2)") == [1, 3, 5, 7, 9]
    assert xyz.parse_values(steps, "1-10 [5]") == [1, 3, 6, 8, 10]
    assert xyz.parse_values(steps, "10-8, 20") == [10, 9, 8, 20]
    assert xyz.parse_values(cfg, "0.5-1.5 (+0.5)") == [0.5, 1.0, 1.5]
    assert xyz.parse_values(cfg, "1-2 [3]") == [1.0, 1.5, 2.0]
    assert xyz.parse_values(prompt_sr, 'cat, "dog, big", red') == ["cat", "dog, big", "red"]
    assert len(xyz.parse_values(xyz.find_axis("Prompt order"), "a, b, c")) == 6


def test_xyz_two_axes_six_images(easel: Any, generate: Any) -> None:
    args = ["Steps", "1-3", None, "CFG Scale", "3,7", None, "Nothing", "", None,
            True, True, False, False, False, False, False, 0, False]
    result = generate(prompt="a red circle", script_name="x/y/z plot", script_args=args)
    assert len(result.images) == 7 and result.index_of_first_image == 1
    grid = result.images[0]
    assert grid.width > 3 * 64 and grid.height > 2 * 64  # 3 columns x 2 rows plus legends
    swept = [(text.split("Steps: ")[1].split(",")[0], text.split("CFG scale: ")[1].split(",")[0])
             for text in result.infotexts[1:]]
    assert swept == [(s, c) for c in ("3", "7") for s in ("1", "2", "3")]
    assert len({image.tobytes() for image in result.images[1:]}) == 6
    # positional indices work too (A1111 clients send the dropdown index)
    xyz = _xyz_module(easel)
    assert xyz.find_axis(4).label == "Steps"


def test_prompt_matrix(generate: Any) -> None:
    result = generate(prompt="a cat|red|blue", steps=1, script_name="prompt matrix",
                      script_args=[False, False, "positive", "comma", 0])
    assert result.all_prompts == ["a cat", "a cat, red", "a cat, blue", "a cat, red, blue"]
    assert len(result.images) == 5 and result.images[0].width > 64


def test_prompts_from_textbox(generate: Any) -> None:
    text = 'a cat\n--prompt "a dog" --steps 1 --negative_prompt "red"'
    result = generate(prompt="", script_name="prompts from file or textbox", script_args=[False, False, "start", text])
    assert len(result.images) == 2
    assert result.infotexts[0].startswith("a cat\n") and "Steps: 2" in result.infotexts[0]
    assert result.infotexts[1].startswith("a dog\nNegative prompt: red\n") and "Steps: 1" in result.infotexts[1]


def test_sd_upscale_a1111_argument_order(generate: Any) -> None:
    init = encode_base64(Image.new("RGB", (64, 64), (200, 30, 30)))
    result = generate("img2img", prompt="a red square", init_images=[init], denoising_strength=0.5,
                      script_name="sd upscale", script_args=["", 16, "Lanczos", 2.0])
    assert len(result.images) == 1 and result.images[0].size == (128, 128)


def test_loopback(generate: Any) -> None:
    init = encode_base64(Image.new("RGB", (64, 64), (30, 30, 200)))
    result = generate("img2img", prompt="a blue square", init_images=[init], denoising_strength=0.6,
                      script_name="loopback", script_args=[2, 0.3, "Linear", "None"])
    assert len(result.images) == 3  # the history grid, then each loop
    assert "Denoising strength: 0.6" in result.infotexts[1] and "Denoising strength: 0.3" in result.infotexts[2]
