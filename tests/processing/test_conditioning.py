from __future__ import annotations

import pytest
import torch

from modules.core.errors import UserInputError
from modules.processing.conditioning import (
    Conditioning,
    PromptEncoder,
    ScheduleCallback,
    _comma_id,
    combine_composable,
    textual_inversion_vectors,
)

PLAIN = "a photo of a red cat, blue sky"


@pytest.fixture(scope="module")
def encoder(sd_pipe) -> PromptEncoder:
    return PromptEncoder.from_pipeline(sd_pipe)


def token_count(pipe, text: str) -> int:
    return len(pipe.tokenizer(text, add_special_tokens=False).input_ids)


def words(n: int) -> str:
    vocab = ["cat", "dog", "photo", "red", "blue", "house", "sky"]
    return " ".join(vocab[i % len(vocab)] for i in range(n))


# ---- parity with diffusers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", [PLAIN, "", words(75), "A Cat   with\nnewlines, and symbols #1!"])
def test_plain_prompt_is_bit_identical_to_encode_prompt(sd_pipe, encoder: PromptEncoder, prompt: str) -> None:
    expected = sd_pipe.encode_prompt(prompt, torch.device("cpu"), 1, False)[0]
    got = encoder.encode(prompt)
    assert got.embeds.shape == expected.shape == (1, 77, 32)
    assert got.embeds.dtype == expected.dtype
    assert torch.equal(got.embeds, expected)


def test_sdxl_plain_prompt_matches_encode_prompt(sdxl_pipe) -> None:
    encoder = PromptEncoder.from_pipeline(sdxl_pipe)
    cpu = torch.device("cpu")
    embeds, _, pooled, _ = sdxl_pipe.encode_prompt(PLAIN, device=cpu, do_classifier_free_guidance=False)
    got = encoder.encode(PLAIN)
    assert got.embeds.shape == (1, 77, 32 + 48)
    assert torch.equal(got.embeds, embeds)
    assert got.pooled is not None and torch.equal(got.pooled, pooled)
    skipped = sdxl_pipe.encode_prompt(PLAIN, device=cpu, do_classifier_free_guidance=False, clip_skip=1)[0]
    assert torch.equal(encoder.encode(PLAIN, clip_skip=2).embeds, skipped)


# ---- weights and emphasis ------------------------------------------------------------------------------------


def test_weight_scales_hidden_state_without_norm(sd_pipe, encoder: PromptEncoder) -> None:
    plain = encoder.encode("a cat on a tree").embeds
    weighted = encoder.encode("a (cat:1.5) on a tree", emphasis="No norm").embeds
    cat_position = 1 + token_count(sd_pipe, "a ")  # after BOS
    assert torch.allclose(weighted[0, cat_position], plain[0, cat_position] * 1.5)
    others = [i for i in range(77) if i != cat_position]
    assert torch.equal(weighted[0, others], plain[0, others])


def test_original_emphasis_keeps_the_mean(sd_pipe, encoder: PromptEncoder) -> None:
    plain = encoder.encode("a cat on a tree").embeds
    weighted = encoder.encode("a (cat:1.5) on a tree").embeds
    assert not torch.allclose(weighted, plain)
    assert torch.allclose(weighted.mean(), plain.mean(), atol=1e-6)
    cat_position = 1 + token_count(sd_pipe, "a ")
    ratio = weighted[0, cat_position] / plain[0, cat_position]
    other_ratio = weighted[0, 0] / plain[0, 0]
    assert torch.allclose(ratio, other_ratio * 1.5, rtol=1e-4)


def test_brackets_decrease_and_nest(encoder: PromptEncoder) -> None:
    plain = encoder.encode("cat").embeds[0, 1]
    assert torch.allclose(encoder.encode("[cat]", emphasis="No norm").embeds[0, 1], plain / 1.1)
    assert torch.allclose(encoder.encode("((cat))", emphasis="No norm").embeds[0, 1], plain * 1.21)


def test_ignore_and_none_modes(encoder: PromptEncoder) -> None:
    plain = encoder.encode("a cat").embeds
    assert torch.equal(encoder.encode("a (cat:1.8)", emphasis="Ignore").embeds, plain)
    literal = encoder.encode("a (cat:1.8)", emphasis="None").embeds  # brackets and digits become tokens
    assert not torch.equal(literal, plain)
    assert torch.equal(literal, encoder.encode("a \\(cat\\:1.8\\)").embeds)
    with pytest.raises(UserInputError):
        encoder.encode("a cat", emphasis="Loud")


# ---- chunking ------------------------------------------------------------------------------------------------


def test_break_makes_two_chunks(encoder: PromptEncoder) -> None:
    cond = encoder.encode("a cat BREAK a dog")
    assert cond.chunks == 2 and cond.embeds.shape == (1, 154, 32)
    assert torch.equal(cond.embeds[:, :77], encoder.encode("a cat").embeds)
    assert torch.equal(cond.embeds[:, 77:], encoder.encode("a dog").embeds)


def test_long_prompts_are_chunked(sd_pipe, encoder: PromptEncoder) -> None:
    assert token_count(sd_pipe, words(100)) == 100
    assert encoder.encode(words(100)).embeds.shape == (1, 154, 32)
    assert encoder.encode(words(75)).embeds.shape == (1, 77, 32)
    assert encoder.encode(words(76)).embeds.shape == (1, 154, 32)
    assert encoder.encode(words(151)).embeds.shape == (1, 231, 32)


def test_comma_backtrack_moves_the_last_phrase(sd_pipe, encoder: PromptEncoder) -> None:
    prompt = words(70) + ", " + words(10)
    cond = encoder.encode(prompt)
    second_chunk = encoder.encode(words(10)).embeds
    assert cond.chunks == 2
    assert torch.equal(cond.embeds[:, 77:], second_chunk)
    no_backtrack = PromptEncoder.from_pipeline(sd_pipe, comma_backtrack=0).encode(prompt)
    assert not torch.equal(no_backtrack.embeds[:, 77:], second_chunk)


def test_clip_skip(sd_pipe, encoder: PromptEncoder) -> None:
    last = encoder.encode(PLAIN).embeds
    skip2 = encoder.encode(PLAIN, clip_skip=2).embeds
    assert not torch.allclose(last, skip2)
    # A1111's clip skip 2 is the second-to-last layer through the final layer norm (diffusers' clip_skip=1; its
    # SD1 code path still reaches for ``text_model``, gone from transformers 5's CLIPTextModel).
    ids = sd_pipe.tokenizer(PLAIN, padding="max_length", max_length=77, return_tensors="pt").input_ids
    text_encoder = sd_pipe.text_encoder
    with torch.no_grad():
        expected = text_encoder.final_layer_norm(text_encoder(ids, output_hidden_states=True).hidden_states[-2])
    assert torch.equal(skip2, expected)
    assert torch.equal(encoder.encode(PLAIN, clip_skip=99).embeds, encoder.encode(PLAIN, clip_skip=3).embeds)


def test_negative_is_padded_to_the_positive_length(encoder: PromptEncoder) -> None:
    cond, uncond = encoder.encode_pair(words(100), "ugly")
    assert cond.embeds.shape == uncond.embeds.shape == (1, 154, 32)
    assert torch.equal(uncond.embeds[:, :77], encoder.encode("ugly").embeds)
    assert torch.equal(uncond.embeds[:, 77:], encoder.encode("").embeds)


# ---- schedules and AND ---------------------------------------------------------------------------------------


def test_scheduled_conditioning_switches_and_caches(encoder: PromptEncoder) -> None:
    scheduled = encoder.encode_schedules("a [cat:dog:0.5] photo", 20)
    cat, dog = encoder.encode("a cat photo").embeds, encoder.encode("a dog photo").embeds
    assert all(torch.equal(scheduled.at(i), cat) for i in range(10))
    assert all(torch.equal(scheduled.at(i), dog) for i in range(10, 20))
    assert scheduled.change_steps() == [10]
    assert not scheduled.is_static and not scheduled.is_composable
    assert scheduled.at(0).data_ptr() == scheduled.at(5).data_ptr()  # encoded once


def test_alternation_alternates(encoder: PromptEncoder) -> None:
    scheduled = encoder.encode_schedules("[cat|dog]", 4)
    cat, dog = encoder.encode("cat").embeds, encoder.encode("dog").embeds
    assert [torch.equal(scheduled.at(i), cat) for i in range(4)] == [True, False, True, False]
    assert torch.equal(scheduled.at(1), dog)
    assert scheduled.change_steps() == [1, 2, 3]


def test_schedule_pair_pads_every_segment(encoder: PromptEncoder) -> None:
    cond, uncond = encoder.encode_schedules_pair(f"[cat:{words(90)}:3]", "ugly AND bad", 6)
    assert cond.at(0).shape == cond.at(5).shape == uncond.at(0).shape == (1, 154, 32)
    assert len(uncond.parts) == 1  # the negative prompt is not composable


def test_composable_and(encoder: PromptEncoder) -> None:
    scheduled = encoder.encode_schedules("a cat :1.5 AND a dog :0.5", 10)
    assert scheduled.is_composable and scheduled.weights == [1.5, 0.5]
    stacked = scheduled.at(0)
    assert stacked.shape == (2, 77, 32)
    assert torch.equal(stacked[:1], encoder.encode("a cat").embeds)
    assert torch.equal(stacked[1:], encoder.encode("a dog").embeds)


def test_combine_composable() -> None:
    uncond = torch.zeros(1, 4, 2, 2)
    conds = [torch.ones(1, 4, 2, 2), torch.full((1, 4, 2, 2), 2.0)]
    combined = combine_composable(uncond, conds, [1.5, 0.5], cfg_scale=7.0)
    assert torch.allclose(combined, torch.full_like(uncond, 7.0 * (1.5 + 1.0)))
    single = combine_composable(uncond, conds[:1], [1.0], cfg_scale=3.0)
    assert torch.allclose(single, uncond + 3.0 * (conds[0] - uncond))


def test_schedule_callback_changes_unet_conditioning(sd_pipe, encoder: PromptEncoder) -> None:
    cond, uncond = encoder.encode_schedules_pair("a [cat:dog:2] photo", "ugly", 4)
    seen: list[torch.Tensor] = []

    def record(module, args, kwargs):
        seen.append(kwargs["encoder_hidden_states"].clone())

    handle = sd_pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    callback = ScheduleCallback(cond, uncond)
    try:
        sd_pipe(
            prompt_embeds=cond.at(0),
            negative_prompt_embeds=uncond.at(0),
            num_inference_steps=4,
            height=16,
            width=16,
            guidance_scale=5.0,
            output_type="latent",
            callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=callback.tensor_inputs,
        )
    finally:
        handle.remove()
    assert len(seen) == 4
    cat, dog, ugly = (encoder.encode(t).embeds for t in ("a cat photo", "a dog photo", "ugly"))
    for step, states in enumerate(seen):
        assert torch.equal(states[:1], ugly)
        assert torch.equal(states[1:], cat if step < 2 else dog)


# ---- textual inversion ---------------------------------------------------------------------------------------


def test_textual_inversion_is_spliced_and_leaves_no_trace(sd_pipe) -> None:
    tokenizer, text_encoder = sd_pipe.tokenizer, sd_pipe.text_encoder
    vocab_before = len(tokenizer)
    weights_before = text_encoder.get_input_embeddings().weight.clone()
    plain_before = PromptEncoder.from_pipeline(sd_pipe).encode("a mystyle cat").embeds

    torch.manual_seed(3)
    vectors = torch.randn(2, 32)
    encoder = PromptEncoder.from_pipeline(sd_pipe, embeddings={"mystyle": vectors})
    with_ti = encoder.encode("a MyStyle cat")
    assert with_ti.embeddings_used == ("mystyle",)
    assert not torch.allclose(with_ti.embeds, plain_before)
    assert encoder.encode("a mystylex cat").embeddings_used == ()

    # The two vectors take two positions: the next word sits where a 2-token name would put it.
    other = PromptEncoder.from_pipeline(sd_pipe, embeddings={"mystyle": torch.randn(2, 32)}).encode("a mystyle cat")
    assert not torch.allclose(other.embeds[0, 2:4], with_ti.embeds[0, 2:4])
    assert torch.equal(other.embeds[0, :2], with_ti.embeds[0, :2])  # causal: positions before the embedding

    assert len(tokenizer) == vocab_before
    assert torch.equal(text_encoder.get_input_embeddings().weight, weights_before)
    assert not text_encoder.get_input_embeddings()._forward_hooks
    assert torch.equal(PromptEncoder.from_pipeline(sd_pipe).encode("a mystyle cat").embeds, plain_before)


def test_textual_inversion_with_wrong_width_is_skipped(sd_pipe) -> None:
    encoder = PromptEncoder.from_pipeline(sd_pipe, embeddings={"wide": torch.randn(1, 99)})
    assert encoder.skipped_embeddings == ["wide"]
    assert encoder.encode("wide cat").embeddings_used == ()


def test_conditioning_chunks_property() -> None:
    assert Conditioning(torch.zeros(1, 154, 8)).chunks == 2


def test_textual_inversion_file_layouts() -> None:
    vectors = torch.randn(3, 32)
    assert torch.equal(textual_inversion_vectors({"string_to_param": {"*": vectors}, "name": "x", "step": 5}), vectors)
    assert torch.equal(textual_inversion_vectors({"emb_params": vectors}), vectors)
    assert torch.equal(textual_inversion_vectors({"<my-token>": vectors}), vectors)
    clip_l, clip_g = textual_inversion_vectors({"clip_g": torch.zeros(2, 48), "clip_l": torch.ones(2, 32)})
    assert clip_l.shape == (2, 32) and clip_g.shape == (2, 48)
    with pytest.raises(ValueError):
        textual_inversion_vectors({"a": torch.zeros(1), "b": torch.zeros(1)})


def test_sdxl_textual_inversion_uses_one_tensor_per_encoder(sdxl_pipe) -> None:
    plain = PromptEncoder.from_pipeline(sdxl_pipe).encode("a mystyle cat")
    pair = textual_inversion_vectors({"clip_l": torch.randn(2, 32), "clip_g": torch.randn(2, 48)})
    encoder = PromptEncoder.from_pipeline(sdxl_pipe, embeddings={"mystyle": pair})
    with_ti = encoder.encode("a mystyle cat")
    assert with_ti.embeddings_used == ("mystyle",)
    assert not torch.allclose(with_ti.embeds, plain.embeds)
    assert with_ti.pooled is not None and plain.pooled is not None
    assert not torch.allclose(with_ti.pooled, plain.pooled)
    assert not sdxl_pipe.text_encoder_2.get_input_embeddings()._forward_hooks


def test_the_comma_id_is_found_without_building_the_vocabulary(sd_pipe) -> None:
    """The comma backtrack needs the id of ``,</w>``; building CLIP's vocabulary dict for it on every prompt cost
    tens of milliseconds per job. The id comes from a single-token lookup, the same id, with the same chunks."""
    import copy
    import types

    tokenizer = copy.deepcopy(sd_pipe.tokenizer)
    builds: list[int] = []
    build = tokenizer.get_vocab

    def counted_get_vocab() -> dict[str, int]:
        builds.append(1)
        return build()

    tokenizer.get_vocab = counted_get_vocab
    pipe = types.SimpleNamespace(tokenizer=tokenizer, text_encoder=sd_pipe.text_encoder)
    prompt = words(70) + ", " + words(10)
    first = PromptEncoder.from_pipeline(pipe).encode(prompt)
    second = PromptEncoder.from_pipeline(pipe).encode(prompt + ", " + words(3))
    assert builds == []
    assert _comma_id(tokenizer) == build().get(",</w>") is not None
    tokenizer_without = copy.deepcopy(sd_pipe.tokenizer)
    unknown = tokenizer_without.unk_token_id
    tokenizer_without.convert_tokens_to_ids = lambda token: unknown  # a vocabulary without the comma token
    assert _comma_id(tokenizer_without) is None
    reference = PromptEncoder.from_pipeline(sd_pipe).encode(prompt)
    assert first.chunks == second.chunks == 2
    assert torch.equal(first.embeds, reference.embeds)
    assert torch.equal(first.embeds[:, 77:], PromptEncoder.from_pipeline(sd_pipe).encode(words(10)).embeds)
