"""Face restoration in the UI: named components -> the extras and generation request models, paste, settings.

No browser: the mapping rules are checked on the gradio-free helpers, and the page's components on a Blocks
built over light services (no model is loaded; the face restorer list is a stand-in naming one installed model).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from modules.core.errors import UserInputError
from modules.core.settings import Options
from modules.processing.extras import ExtrasSingleImageParams, parse_extras_payload
from modules.processing.infotext import build_infotext
from modules.ui.fields import (
    UNSET_CHOICE_LABEL,
    build_extras_params,
    build_params,
    extras_info_html,
    listed_choices,
    option_changes,
    option_widget,
    paste_infotext,
)

EXTRAS_VALUES: dict[str, Any] = {
    "resize_mode": 0, "upscaling_resize": 2.0, "upscaling_resize_w": 640.0, "upscaling_resize_h": 480.0,
    "upscaling_crop": True, "upscaler_1": "Lanczos", "upscaler_2": "", "extras_upscaler_2_visibility": 0.0,
    "gfpgan_visibility": 0.75, "codeformer_visibility": 0.5, "codeformer_weight": 0.25,
}


def test_extras_sliders_feed_the_api_request_model() -> None:
    params = build_extras_params(EXTRAS_VALUES, "AAAA")
    assert type(params) is ExtrasSingleImageParams  # the model /sdapi/v1/extra-single-image validates
    assert (params.gfpgan_visibility, params.codeformer_visibility, params.codeformer_weight) == (0.75, 0.5, 0.25)
    assert (params.upscaling_resize_w, params.upscaling_resize_h) == (640, 480)
    assert isinstance(params.upscaling_resize_w, int) and params.upscaler_2 == "None" and params.image == "AAAA"
    # the job payload parses back to the same request on the runner's side
    assert parse_extras_payload(params.model_dump(mode="json")) == params


def test_extras_face_fields_default_off_and_errors_name_the_field() -> None:
    untouched = build_extras_params({"upscaler_1": "Lanczos"}, "AAAA")
    assert (untouched.gfpgan_visibility, untouched.codeformer_visibility, untouched.codeformer_weight) == (0, 0, 0)
    with pytest.raises(UserInputError) as too_visible:
        build_extras_params({**EXTRAS_VALUES, "gfpgan_visibility": 1.5}, "AAAA")
    assert too_visible.value.field == "gfpgan_visibility"


def test_extras_info_drops_notes_shown_on_the_warning_line() -> None:
    note = "GFPGAN face restoration skipped: no GFPGAN model is installed (put its weights in models/GFPGAN)"
    html_info = f"<p>Postprocess upscale by: 2, Postprocess upscaler: Lanczos</p>\n<p>{note}</p>"
    assert extras_info_html(html_info, [note]) == "<p>Postprocess upscale by: 2, Postprocess upscaler: Lanczos</p>"
    assert extras_info_html(html_info, []) == html_info


@pytest.mark.parametrize("kind", ["txt2img", "img2img"])
def test_restore_faces_checkbox_maps_to_the_request(kind: str) -> None:
    extra = {"init_images": ["AAAA"]} if kind == "img2img" else {}
    values = {"prompt": "a face", "steps": 4.0, "seed": 1.0, "restore_faces": True}
    assert build_params(kind, values, extra=extra).restore_faces is True
    assert build_params(kind, {**values, "restore_faces": False}, extra=extra).restore_faces is False


def test_pasting_face_restoration_ticks_the_checkbox() -> None:
    infotext = build_infotext("a face", "", {"Steps": 4, "Seed": 1, "Face restoration": "CodeFormer",
                                             "Size": "64x64"})
    tab_fields = {"prompt", "steps", "seed", "width", "height", "restore_faces"}
    pasted = paste_infotext(infotext, tab_fields=tab_fields, quicksettings=[], current_options=Options().model_dump())
    assert pasted.fields["restore_faces"] is True and pasted.fields["steps"] == 4
    plain = build_infotext("a face", "", {"Steps": 4, "Seed": 1, "Size": "64x64"})
    assert "restore_faces" not in paste_infotext(plain, tab_fields=tab_fields, quicksettings=[]).fields


def test_face_settings_widgets() -> None:
    weight = option_widget("code_former_weight", Options.model_fields["code_former_weight"])
    assert weight.kind == "slider" and (weight.minimum, weight.maximum) == (0, 1)
    assert Options().code_former_weight == 0.5  # A1111's default
    model = option_widget("face_restoration_model", Options.model_fields["face_restoration_model"])
    assert model.kind == "textbox" and model.nullable  # the page lists the installed restorers for it
    assert listed_choices(model, ["GFPGAN"], None) == [(UNSET_CHOICE_LABEL, ""), ("GFPGAN", "GFPGAN")]
    # a chosen model that is no longer installed stays listed, so opening the page does not change it
    assert listed_choices(model, [], "CodeFormer") == [(UNSET_CHOICE_LABEL, ""), ("CodeFormer", "CodeFormer")]
    widgets = {"face_restoration_model": model, "code_former_weight": weight}
    changes = option_changes(widgets, {"face_restoration_model": "GFPGAN", "code_former_weight": 0.7},
                             Options().model_dump())
    assert changes == {"face_restoration_model": "GFPGAN", "code_former_weight": 0.7}
    assert option_changes(widgets, {"face_restoration_model": ""}, {"face_restoration_model": "GFPGAN"}) == {
        "face_restoration_model": None}


class _InstalledFaces:
    """Stands in for the face restorer service's listing: one installed model, nothing loaded."""

    def names(self) -> list[str]:
        return ["GFPGAN"]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole page built over light services; components by elem_id."""
    import webui
    from modules.core.settings import Settings
    from modules.ui.mount import build_blocks

    root: Path = tmp_path_factory.mktemp("faces-ui")
    settings = Settings.load(["--data-dir", str(root / "data"), "--models-dir", str(root / "models")], {})
    services = webui.build_services(settings)
    services.faces = _InstalledFaces()
    try:
        blocks = build_blocks(services)
        yield {getattr(block, "elem_id", None): block for block in blocks.blocks.values()}
    finally:
        services.job_store.close()


def test_page_has_the_face_restoration_controls(page: dict[str, Any]) -> None:
    for name in ("gfpgan_visibility", "codeformer_visibility", "codeformer_weight"):
        slider = page[f"extras_{name}"]
        assert (type(slider).__name__, slider.minimum, slider.maximum, slider.value) == ("Slider", 0, 1, 0)
    for kind in ("txt2img", "img2img"):
        checkbox = page[f"{kind}_restore_faces"]
        assert type(checkbox).__name__ == "Checkbox" and checkbox.value is False
    model = page["setting_page_face_restoration_model"]
    assert type(model).__name__ == "Dropdown" and ("GFPGAN", "GFPGAN") in model.choices and model.value == ""
    assert page["setting_page_code_former_weight"].value == 0.5


def test_extras_tab_payload_from_an_image() -> None:
    from modules.ui.extras import extras_payload

    payload = extras_payload(Image.new("RGBA", (8, 8), "red"), EXTRAS_VALUES)
    params = parse_extras_payload(payload)
    assert isinstance(params, ExtrasSingleImageParams) and params.codeformer_weight == 0.25 and params.image

