"""Prompt features in real runs: prompt editing per step, LoRA on/off, embeddings, styles, wildcards."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch


class CondProbe:
    """DenoiseHooks that records the text conditioning the UNet gets at each sampling step."""

    def __init__(self) -> None:
        self.conds: list[torch.Tensor] = []

    def before_unet(self, state: Any) -> None:
        self.conds.append(state.cond[0].clone())

    def after_unet(self, state: Any) -> None:
        pass

    def after_cfg(self, state: Any) -> None:
        pass


def _probe_run(easel: Any, txt2img: Any, **fields: Any) -> tuple[Any, CondProbe]:
    probe = CondProbe()

    def attach(run: Any, params: Any) -> None:
        run.denoise_hooks.append(probe)

    easel.generation.customizers.append(attach)
    try:
        return txt2img(**fields), probe
    finally:
        easel.generation.customizers.remove(attach)


def _encode(easel: Any, text: str, embeddings: Any = None) -> torch.Tensor:
    from modules.processing.conditioning import PromptEncoder

    pipe = easel.manager.ensure_loaded("tiny-sd").pipe
    return PromptEncoder.from_pipeline(pipe, embeddings=embeddings).encode(text).embeds


def test_prompt_editing_switches_at_the_right_step(easel: Any, txt2img: Any) -> None:
    result, probe = _probe_run(easel, txt2img, prompt="a [red:blue:2] cat", steps=4)
    red, blue = _encode(easel, "a red cat"), _encode(easel, "a blue cat")
    used = ["red" if torch.equal(c, red) else "blue" if torch.equal(c, blue) else "?" for c in probe.conds]
    assert used == ["red", "red", "blue", "blue"]
    assert result.infotexts[0].startswith("a [red:blue:2] cat\n")


def test_lora_changes_output_and_leaves_no_trace(easel: Any, txt2img: Any) -> None:
    networks = easel.networks
    assert [lora["name"] for lora in networks.loras()] == ["tiny_lora"]
    before = np.asarray(txt2img(prompt="a cat").images[0])
    with_lora = txt2img(prompt="a cat <lora:tiny_lora:1>")
    after = np.asarray(txt2img(prompt="a cat").images[0])
    assert not np.array_equal(before, np.asarray(with_lora.images[0]))
    assert np.array_equal(before, after), "the LoRA leaked into the next job"
    info = with_lora.infotexts[0]
    assert info.startswith("a cat <lora:tiny_lora:1>\n")
    assert re.search(r'Lora hashes: "tiny_lora: [0-9a-f]{12}"', info)
    pipe = easel.manager.current.pipe
    assert not any("lora" in name for name, _ in pipe.unet.named_modules())
    half = np.asarray(txt2img(prompt="a cat <lora:tiny_lora:0.5>").images[0])
    assert not np.array_equal(half, np.asarray(with_lora.images[0])) and not np.array_equal(half, before)


def test_missing_lora_is_a_warning(easel: Any, txt2img: Any) -> None:
    result = txt2img(prompt="a cat <lora:nope:1>", steps=1)
    assert any("nope" in warning for warning in result.warnings)


def test_embedding_is_used_by_name(easel: Any, txt2img: Any) -> None:
    networks = easel.networks
    listed = networks.embeddings()
    assert listed["loaded"]["tinyemb"]["vectors"] == 2 and listed["loaded"]["tinyemb"]["shape"] == 32
    result, probe = _probe_run(easel, txt2img, prompt="a tinyemb cat", steps=1)
    vectors = networks.embeddings_in(["tinyemb"])["tinyemb"].vectors
    assert torch.equal(probe.conds[0], _encode(easel, "a tinyemb cat", {"tinyemb": vectors}))
    assert not torch.equal(probe.conds[0], _encode(easel, "a tinyemb cat"))
    assert re.search(r'TI hashes: "tinyemb: [0-9a-f]{12}"', result.infotexts[0])


def test_styles_apply(easel: Any, txt2img: Any) -> None:
    styles = easel.styles.styles()
    assert styles == [{"name": "blueish", "prompt": "{prompt}, blue", "negative_prompt": "green"}]
    result = txt2img(prompt="a cat", styles=["blueish"], steps=1)
    assert result.all_prompts == ["a cat, blue"] and result.all_negative_prompts == ["green"]
    assert "Styles: blueish" in result.infotexts[0]


def test_wildcards_expand_per_seed(easel: Any, txt2img: Any) -> None:
    first = txt2img(prompt="a __color__ cat", steps=1, batch_size=2, seed=5)
    assert all(prompt in ("a red cat", "a green cat") for prompt in first.all_prompts)
    again = txt2img(prompt="a __color__ cat", steps=1, batch_size=2, seed=5)
    assert again.all_prompts == first.all_prompts
    unknown = txt2img(prompt="a __nosuch__ cat", steps=1)
    assert unknown.all_prompts == ["a __nosuch__ cat"]
