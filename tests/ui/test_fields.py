"""The UI's form logic without a browser: named values -> requests, paste, settings widgets, history, blocks."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from modules.core.errors import UserInputError
from modules.core.settings import Options
from modules.processing.image_store import ImageStore
from modules.processing.infotext import build_infotext
from modules.processing.params import Img2ImgParams, Txt2ImgParams
from modules.ui.fields import (
    build_params,
    mask_from_layers,
    option_changes,
    option_widget,
    option_widgets,
    paste_infotext,
    progress_text,
)

TXT2IMG_VALUES: dict[str, Any] = {
    "prompt": "a cat", "negative_prompt": "blurry", "styles": [], "sampler_name": "Euler a", "scheduler": "Karras",
    "steps": 12.0, "width": 64.0, "height": 96.0, "n_iter": 2.0, "batch_size": 1.0, "cfg_scale": 6.5, "seed": 123.0,
    "subseed": -1.0, "subseed_strength": 0.0, "clip_skip": 0.0, "enable_hr": False, "hr_upscaler": "Latent",
    "hr_second_pass_steps": 0.0, "denoising_strength": 0.7, "hr_scale": 2.0, "hr_resize_x": 0.0,
    "hr_resize_y": 0.0, "override_settings_text": "",
}


def test_build_txt2img_from_named_values() -> None:
    params = build_params("txt2img", TXT2IMG_VALUES)
    assert isinstance(params, Txt2ImgParams)
    assert (params.prompt, params.negative_prompt, params.sampler_name, params.scheduler) == (
        "a cat", "blurry", "Euler a", "Karras")
    assert (params.steps, params.width, params.height, params.n_iter, params.seed) == (12, 64, 96, 2, 123)
    assert isinstance(params.steps, int) and isinstance(params.seed, int)
    assert params.clip_skip is None  # 0 = use the quick setting
    assert params.denoising_strength is None  # only sent with hires fix, as A1111 does
    assert params.override_settings == {}


def test_build_txt2img_hires_clip_skip_and_overrides() -> None:
    values = {**TXT2IMG_VALUES, "enable_hr": True, "clip_skip": 2.0,
              "override_settings_text": json.dumps({"eta_noise_seed_delta": 31337})}
    params = build_params("txt2img", values, extra={"script_name": None})
    assert params.enable_hr and params.denoising_strength == 0.7 and params.clip_skip == 2
    assert params.override_settings == {"eta_noise_seed_delta": 31337}


def test_build_params_errors_name_the_field() -> None:
    with pytest.raises(UserInputError) as bad_width:
        build_params("txt2img", {**TXT2IMG_VALUES, "width": 65.0})
    assert bad_width.value.field == "width"
    with pytest.raises(UserInputError) as bad_override:
        build_params("txt2img", {**TXT2IMG_VALUES, "override_settings_text": "[1, 2]"})
    assert bad_override.value.field == "override_settings"


def test_build_img2img_with_image_fields() -> None:
    values = {key: value for key, value in TXT2IMG_VALUES.items() if not key.startswith("hr_") and key != "enable_hr"}
    values.update({"denoising_strength": 0.4, "resize_mode": 2, "mask_blur": 8.0, "inpainting_fill": 1,
                   "inpaint_full_res": True, "inpaint_full_res_padding": 32.0, "inpainting_mask_invert": 1,
                   "img2img_mode": "inpaint"})
    params = build_params("img2img", values, extra={"init_images": ["AAAA"], "mask": "BBBB"})
    assert isinstance(params, Img2ImgParams)
    assert params.denoising_strength == 0.4 and params.resize_mode == 2 and params.mask_blur == 8
    assert params.inpaint_full_res is True and params.inpainting_mask_invert == 1
    assert params.init_images == ["AAAA"] and params.mask == "BBBB"


INFOTEXT = build_infotext("a red circle\nsecond line", "ugly", {
    "Steps": 12, "Sampler": "DPM++ 2M", "Schedule type": "Karras", "CFG scale": 6.5, "Seed": 4242,
    "Size": "64x96", "Model hash": "0123456789", "Model": "tiny-sd", "Clip skip": 2, "ENSD": 31337,
    "Denoising strength": 0.3, "Hires upscale": 2, "Hires upscaler": "Latent", "Mask blur": 6})

TXT2IMG_FIELDS = set(TXT2IMG_VALUES) - {"override_settings_text"}
QUICK = ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"]


def test_paste_fills_the_tab_fields() -> None:
    pasted = paste_infotext(INFOTEXT, tab_fields=TXT2IMG_FIELDS, quicksettings=QUICK,
                            current_options=Options().model_dump())
    fields = pasted.fields
    assert fields["prompt"] == "a red circle\nsecond line" and fields["negative_prompt"] == "ugly"
    assert (fields["steps"], fields["seed"], fields["width"], fields["height"]) == (12, 4242, 64, 96)
    assert (fields["sampler_name"], fields["scheduler"], fields["cfg_scale"]) == ("DPM++ 2M", "Karras", 6.5)
    assert fields["enable_hr"] is True and fields["hr_scale"] == 2 and fields["denoising_strength"] == 0.3
    assert "mask_blur" not in fields  # not a txt2img field


def test_paste_sends_settings_to_quicksettings_and_the_rest_to_overrides() -> None:
    pasted = paste_infotext(INFOTEXT, tab_fields=TXT2IMG_FIELDS, quicksettings=QUICK,
                            current_options=Options().model_dump())
    assert pasted.quicksettings == {"sd_model_checkpoint": "0123456789", "CLIP_stop_at_last_layers": 2}
    # RNG is absent, so A1111's parse default "GPU" applies and differs from Easel's CPU default
    assert pasted.overrides == {"eta_noise_seed_delta": 31337, "randn_source": "GPU"}
    # without a clip-skip quick setting the tab's own clip skip box gets it
    alone = paste_infotext(INFOTEXT, tab_fields=TXT2IMG_FIELDS, quicksettings=["sd_model_checkpoint"],
                           current_options=Options().model_dump())
    assert alone.fields["clip_skip"] == 2 and "CLIP_stop_at_last_layers" in alone.overrides


def test_paste_into_img2img_takes_mask_blur() -> None:
    fields = {"prompt", "steps", "mask_blur", "denoising_strength"}
    pasted = paste_infotext(INFOTEXT, tab_fields=fields, quicksettings=QUICK)
    assert pasted.fields == {"prompt": "a red circle\nsecond line", "steps": 12, "mask_blur": 6,
                             "denoising_strength": 0.3}


def test_mask_from_editor_layers() -> None:
    layer = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    layer.putpixel((2, 3), (255, 255, 255, 255))
    mask = mask_from_layers([layer, None], (8, 8))
    assert mask.mode == "L" and mask.getpixel((2, 3)) == 255 and mask.getpixel((0, 0)) == 0
    inverted = mask_from_layers([layer], (8, 8), invert=True)
    assert inverted.getpixel((2, 3)) == 0 and inverted.getpixel((0, 0)) == 255


def test_settings_widgets_cover_every_option() -> None:
    grouped = option_widgets(Options)
    keys = [widget.key for widgets in grouped.values() for widget in widgets]
    assert sorted(keys) == sorted(Options.model_fields)
    by_key = {widget.key: widget for widgets in grouped.values() for widget in widgets}
    assert by_key["samples_save"].kind == "checkbox"
    assert by_key["samples_format"].kind == "dropdown" and "webp" in by_key["samples_format"].choices
    assert by_key["CLIP_stop_at_last_layers"].kind == "slider" and by_key["CLIP_stop_at_last_layers"].integer
    assert (by_key["CLIP_stop_at_last_layers"].minimum, by_key["CLIP_stop_at_last_layers"].maximum) == (1, 12)
    assert by_key["eta_ddim"].kind == "slider" and not by_key["eta_ddim"].integer
    assert by_key["job_retention_count"].kind == "number"
    assert by_key["disabled_extensions"].kind == "multiselect"
    assert by_key["sd_model_checkpoint"].kind == "textbox" and by_key["sd_model_checkpoint"].nullable
    assert "Saving images" in grouped and "Model" in grouped


def test_settings_widgets_use_titles_and_literal_list_choices() -> None:
    by_key = {widget.key: widget for widgets in option_widgets(Options).values() for widget in widgets}
    assert by_key["backend"].kind == "dropdown" and by_key["backend"].label.startswith("Execution backend")
    assert by_key["backend"].choices[0] == "auto"
    strategies = by_key["memory_strategies"]
    assert strategies.kind == "multiselect" and {"auto", "vae_tiling", "sdpa"} <= set(strategies.choices)
    assert by_key["token_merging_ratio"].kind == "slider" and by_key["token_merging_ratio"].maximum == 0.9
    assert by_key["samples_save"].label == "samples_save"  # no title declared: the key is the label
    assert by_key["disabled_extensions"].choices == ()  # list[str]: choices come from the page


def test_option_changes_converts_and_keeps_only_changes() -> None:
    widgets = {key: option_widget(key, Options.model_fields[key])
               for key in ("CLIP_stop_at_last_layers", "samples_save", "sd_model_checkpoint", "jpeg_quality")}
    current = Options().model_dump()
    changes = option_changes(widgets, {"CLIP_stop_at_last_layers": 2.0, "samples_save": True,
                                       "sd_model_checkpoint": "", "jpeg_quality": 80.0}, current)
    assert changes == {"CLIP_stop_at_last_layers": 2}


def test_progress_text() -> None:
    assert progress_text(status="queued", position=2) == "Waiting: 2 jobs ahead in the queue"
    assert progress_text(status="queued", position=1) == "Waiting: 1 job ahead in the queue"
    text = progress_text(status="running", position=0, step=3, total_steps=20, progress=0.15, eta=2.0)
    assert text == "Generating: Step 3/20 · 15% · ETA 2.0s"


def test_history_lists_outputs_with_infotext(tmp_path: Path) -> None:
    from modules.ui.context import UiContext
    from modules.ui.history import history_dates, history_entries

    store = ImageStore(tmp_path / "outputs")
    store.save(Image.new("RGB", (8, 8), "red"), kind="txt2img", seed=1, prompt="red",
               infotext="red\nSteps: 1, Seed: 1, Size: 8x8")
    store.save(Image.new("RGB", (8, 8), "blue"), kind="img2img", seed=2, prompt="blue",
               infotext="blue\nSteps: 2, Seed: 2, Size: 8x8")

    class FakeServices:
        image_store = store

    ctx = UiContext(FakeServices())
    entries = history_entries(ctx)
    assert {entry["kind"] for entry in entries} == {"txt2img", "img2img"}
    assert all(Path(entry["path"]).is_file() for entry in entries)
    only = history_entries(ctx, "img2img")
    assert len(only) == 1 and only[0]["infotext"].startswith("blue")
    assert history_dates(ctx)[0] == "all" and len(history_dates(ctx)) == 2


def test_image_payload_builds_init_image_and_mask() -> None:
    from modules.ui.generation import GenerationTab, image_payload

    background = Image.new("RGBA", (16, 16), (10, 20, 30, 255))
    layer = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    for x in range(4, 8):
        layer.putpixel((x, 5), (255, 255, 255, 255))
    payload = image_payload(GenerationTab(kind="img2img"), {
        "img2img_mode": "inpaint", "inpaint": {"background": background, "layers": [layer], "composite": background}})
    mask = Image.open(io.BytesIO(base64.b64decode(payload["mask"])))
    init = Image.open(io.BytesIO(base64.b64decode(payload["init_images"][0])))
    assert init.size == (16, 16) and init.mode == "RGB"
    assert mask.getpixel((5, 5)) == 255 and mask.getpixel((0, 0)) == 0


def test_size_sliders_start_at_the_checkpoint_resolution(tiny_models_dir: Path, tmp_path: Path) -> None:
    """The embedded model's folder says 64x64 (UNet sample_size 16 x VAE downscale 4); the tiny test model says
    16 x 2 = 32, below the slider minimum, so 512; a single-file checkpoint says nothing, so 512."""
    from modules.models.catalog import CheckpointCatalog, HashCache
    from modules.ui.context import UiContext
    from tools.embedded.evaluation import DEFAULT_MODEL

    def native(folder: Path, checkpoint: str) -> int:
        catalog = CheckpointCatalog(folder, HashCache(tmp_path / f"{checkpoint}.json"))
        catalog.refresh()

        settings = SimpleNamespace(options=Options(sd_model_checkpoint=checkpoint))
        return UiContext(SimpleNamespace(settings=settings, manager=None, catalog=catalog)).native_size()

    assert native(DEFAULT_MODEL.parent, DEFAULT_MODEL.name) == 64
    assert native(tiny_models_dir / "Stable-diffusion", "tiny-sd") == 512
    single = tmp_path / "single"
    single.mkdir()
    (single / "model.safetensors").write_bytes(b"\0" * 16)
    assert native(single, "model.safetensors") == 512
