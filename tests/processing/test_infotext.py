"""Infotext: A1111's text format written, parsed back, and mapped onto request fields and settings."""

from __future__ import annotations

import pytest

from modules.processing.infotext import (
    A1111_KEY_ORDER,
    PARSE_DEFAULTS,
    build_infotext,
    infotext_to_params,
    order_params,
    parse_infotext,
    quote,
    unquote,
)

A1111_SAMPLE = (
    "masterpiece, best quality, 1girl, (blue eyes:1.2), <lora:add_detail:0.8>\n"
    "Negative prompt: (worst quality, low quality:1.4), EasyNegative\n"
    "Steps: 25, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 3723458841, Size: 512x768, "
    "Model hash: 7f96a1a9ca, Model: anything-v5, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000-ema-pruned.safetensors, "
    "Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, Hires steps: 15, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "add_detail: 7c6bad76eb54", TI hashes: "EasyNegative: c74b4e810b03", Version: v1.10.1'
)

A1111_OLD_SAMPLE = (
    "a photo of an astronaut riding a horse on mars\n"
    "Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 6ce0161689, "
    "Model: v1-5-pruned-emaonly, Version: v1.6.0"
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Euler a", "Euler a"),
        ("a, b", '"a, b"'),
        ("a: 1", '"a: 1"'),
        ("two\nlines", '"two\\nlines"'),
        ('say "hi", ok', '"say \\"hi\\", ok"'),
        (7.5, "7.5"),
    ],
)
def test_quote_only_when_value_holds_a_separator(value: object, expected: str) -> None:
    assert quote(value) == expected
    assert unquote(quote(value)) == str(value)


def test_unquote_leaves_unquoted_and_broken_json_alone() -> None:
    assert unquote("plain") == "plain"
    assert unquote('"broken') == '"broken'
    assert unquote('"a" b "c"') == '"a" b "c"'
    assert unquote('"ünïcode, ok"') == "ünïcode, ok"


def test_build_writes_a1111_layout_and_omits_none() -> None:
    text = build_infotext(
        "a cat\non a mat",
        "blurry",
        {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7.0, "Seed": 5, "Size": "512x512", "VAE": None},
    )
    assert text == (
        "a cat\non a mat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7.0, Seed: 5, Size: 512x512"
    )


def test_build_without_negative_or_prompt() -> None:
    params = {"Steps": 1, "Sampler": "Euler", "Seed": 2}
    assert build_infotext("p", "", params) == "p\nSteps: 1, Sampler: Euler, Seed: 2"
    assert build_infotext("", "", params) == "Steps: 1, Sampler: Euler, Seed: 2"
    parsed = parse_infotext(build_infotext("", "", params))
    assert parsed["Prompt"] == "" and parsed["Negative prompt"] == "" and parsed["Steps"] == 1


ROUND_TRIP_PARAMS: dict[str, object] = {
    "Steps": 30,
    "Sampler": "DPM++ 2M SDE",
    "Schedule type": "Karras",
    "CFG scale": 6.5,
    "Seed": 4294967295,
    "Size": "640x384",
    "Model hash": "0012345678",
    "Model": "my model: v2, final",
    "Variation seed": 42,
    "Variation seed strength": 0.25,
    "Seed resize from": "512x512",
    "Denoising strength": 0.7,
    "Clip skip": 2,
    "ENSD": 31337,
    "Tiling": True,
    "Hires prompt": "line one\nline two, with: colon",
    "Lora hashes": "detail: abc123, style: def456",
    "TI hashes": 'neg: "quoted", x: 1',
    "Version": "v1.10.1",
}


def test_round_trip_multiline_prompts_quoted_values_and_hashes() -> None:
    prompt = "masterpiece, (cat:1.2), [dog]\nsecond line: with colon, and comma\n<lora:detail:0.7>"
    negative = "lowres, bad anatomy\nNSFW"
    parsed = parse_infotext(build_infotext(prompt, negative, ROUND_TRIP_PARAMS))
    assert parsed["Prompt"] == prompt
    assert parsed["Negative prompt"] == negative
    for key, value in ROUND_TRIP_PARAMS.items():
        assert parsed[key] == value, key
        assert type(parsed[key]) is type(value), key
    assert (parsed["Size-1"], parsed["Size-2"]) == (640, 384)
    assert (parsed["Seed resize from-1"], parsed["Seed resize from-2"]) == (512, 512)


def test_round_trip_keeps_param_order() -> None:
    text = build_infotext("p", "n", ROUND_TRIP_PARAMS)
    parsed = parse_infotext(text)
    assert [k for k in parsed if k in ROUND_TRIP_PARAMS] == list(ROUND_TRIP_PARAMS)


def test_parse_real_a1111_sample() -> None:
    parsed = parse_infotext(A1111_SAMPLE)
    assert parsed["Prompt"] == "masterpiece, best quality, 1girl, (blue eyes:1.2), <lora:add_detail:0.8>"
    assert parsed["Negative prompt"] == "(worst quality, low quality:1.4), EasyNegative"
    assert parsed["Steps"] == 25
    assert parsed["Sampler"] == "DPM++ 2M"
    assert parsed["Schedule type"] == "Karras"
    assert parsed["CFG scale"] == 7
    assert parsed["Seed"] == 3723458841
    assert (parsed["Size-1"], parsed["Size-2"]) == (512, 768)
    assert parsed["Model hash"] == "7f96a1a9ca"
    assert parsed["VAE"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert parsed["Denoising strength"] == 0.45
    assert parsed["Clip skip"] == 2
    assert parsed["Hires upscaler"] == "R-ESRGAN 4x+ Anime6B"
    assert parsed["Lora hashes"] == "add_detail: 7c6bad76eb54"
    assert parsed["TI hashes"] == "EasyNegative: c74b4e810b03"
    assert parsed["Version"] == "v1.10.1"
    assert parsed["Emphasis"] == "Original"  # the prompt uses attention brackets


def test_parse_legacy_sampler_name_splits_schedule_and_fills_defaults() -> None:
    parsed = parse_infotext(A1111_OLD_SAMPLE)
    assert parsed["Sampler"] == "DPM++ 2M"
    assert parsed["Schedule type"] == "Karras"
    assert parsed["Negative prompt"] == ""
    for key in ("Clip skip", "RNG", "Hires sampler", "Hires resize-1"):
        assert parsed[key] == PARSE_DEFAULTS[key]
    assert "Emphasis" not in parsed
    assert parse_infotext("x\nSteps: 1, Sampler: Euler, Seed: 1")["Schedule type"] == "Automatic"


def test_last_line_needs_three_pairs_to_be_parameters() -> None:
    parsed = parse_infotext("a cat\nstyle: anime, mood: calm")
    assert parsed["Prompt"] == "a cat\nstyle: anime, mood: calm"
    assert "style" not in parsed
    plain = parse_infotext("just a prompt, with, commas")
    assert plain["Prompt"] == "just a prompt, with, commas"
    assert plain["Clip skip"] == 1


def test_parse_handles_crlf_and_blank_text() -> None:
    parsed = parse_infotext("a\r\nNegative prompt: b\r\nSteps: 2, Seed: 3, Sampler: Euler")
    assert (parsed["Prompt"], parsed["Negative prompt"], parsed["Steps"]) == ("a", "b", 2)
    assert parse_infotext("")["Prompt"] == ""


def test_order_params_follows_a1111_order() -> None:
    shuffled = {"Version": "v1", "Seed": 1, "My ext": "x", "Steps": 2, "Size": "8x8", "Sampler": "Euler"}
    assert list(order_params(shuffled)) == ["Steps", "Sampler", "Seed", "Size", "My ext", "Version"]
    assert A1111_KEY_ORDER[:6] == ["Steps", "Sampler", "Schedule type", "CFG scale", "Image CFG scale", "Seed"]


def test_infotext_to_params_maps_request_fields_and_settings() -> None:
    fields, overrides = infotext_to_params(parse_infotext(A1111_SAMPLE))
    assert fields["prompt"].startswith("masterpiece")
    assert fields["negative_prompt"].startswith("(worst quality")
    assert fields["steps"] == 25
    assert fields["sampler_name"] == "DPM++ 2M"
    assert fields["scheduler"] == "Karras"
    assert fields["cfg_scale"] == 7
    assert fields["seed"] == 3723458841
    assert (fields["width"], fields["height"]) == (512, 768)
    assert fields["denoising_strength"] == 0.45
    assert fields["enable_hr"] is True
    assert fields["hr_scale"] == 2
    assert fields["hr_second_pass_steps"] == 15
    assert fields["hr_upscaler"] == "R-ESRGAN 4x+ Anime6B"
    assert "hr_sampler_name" not in fields  # "Use same sampler" means the request's None
    assert overrides["sd_model_checkpoint"] == "7f96a1a9ca"  # the hash wins over the name, as in A1111
    assert overrides["sd_vae"] == "vae-ft-mse-840000-ema-pruned.safetensors"
    assert overrides["CLIP_stop_at_last_layers"] == 2
    assert overrides["randn_source"] == "GPU"


def test_infotext_to_params_variation_seed_resize_and_hires_resize() -> None:
    text = build_infotext(
        "p",
        "",
        {
            "Steps": 4,
            "Sampler": "Euler",
            "Seed": 9,
            "Model": "only-name",
            "Variation seed": 11,
            "Variation seed strength": 0.3,
            "Seed resize from": "256x320",
            "Hires resize": "1024x768",
            "Hires sampler": "Euler a",
            "ENSD": 31337,
            "Styles": '["a", "b, c"]',
        },
    )
    fields, overrides = infotext_to_params(parse_infotext(text))
    assert (fields["subseed"], fields["subseed_strength"]) == (11, 0.3)
    assert (fields["seed_resize_from_w"], fields["seed_resize_from_h"]) == (256, 320)
    assert (fields["hr_resize_x"], fields["hr_resize_y"]) == (1024, 768)
    assert fields["hr_sampler_name"] == "Euler a"
    assert fields["enable_hr"] is True
    assert fields["styles"] == ["a", "b, c"]
    assert overrides["sd_model_checkpoint"] == "only-name"
    assert overrides["eta_noise_seed_delta"] == 31337


def test_infotext_to_params_drops_current_and_unknown_settings_and_skipped_keys() -> None:
    parsed = parse_infotext(A1111_SAMPLE)
    current = {"CLIP_stop_at_last_layers": 2, "sd_vae": "Automatic", "randn_source": "CPU"}
    fields, overrides = infotext_to_params(parsed, current_options=current, skip_keys={"Seed", "Size"})
    assert overrides == {"sd_vae": "vae-ft-mse-840000-ema-pruned.safetensors", "randn_source": "GPU"}
    assert "seed" not in fields and "width" not in fields and "height" not in fields
    assert fields["steps"] == 25
