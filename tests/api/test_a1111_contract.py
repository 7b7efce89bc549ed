"""A1111 v1.10 contract details seen from a real client (``webuiapi``): X/Y/Z axis numbers, options, model name."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import webuiapi
from PIL import Image

from modules.core.a1111_options import A1111_OPTION_DEFAULTS
from modules.core.hashing import file_sha256
from modules.core.settings import Options
from tests.images import png_b64
from tests.vaes import write_vae

XYZ_REST = [True, True, False, False, False, False, False, 0, False]  # draw_legend, include_lone_images ... csv_mode


@pytest.fixture()
def webui_client(easel):
    return webuiapi.WebUIApi(host="127.0.0.1", port=easel.port, sampler="Euler", steps=2)


def _xyz(x_type, x_values, y_type=0, y_values=""):
    return [x_type, x_values, [], y_type, y_values, [], 0, "", [], *XYZ_REST]


def _swept(infotexts, key):
    return [text.split(f"{key}: ")[1].split(",")[0] for text in infotexts]


def test_xyz_txt2img_axis_numbers_are_a1111s(webui_client):
    # txt2img: 4 = Steps, 6 = CFG Scale (5 is the txt2img-only Hires steps)
    result = webui_client.txt2img(prompt="a red circle", width=64, height=64, seed=5, script_name="X/Y/Z Plot",
                                  script_args=_xyz(6, "3, 9", 4, "1-2"))
    assert len(result.images) == 5 and result.images[0].width > 2 * 64 and result.images[0].height > 2 * 64
    cells = result.info["infotexts"][1:]
    assert _swept(cells, "CFG scale") == ["3", "9", "3", "9"]
    assert _swept(cells, "Steps") == ["1", "1", "2", "2"]


def test_xyz_img2img_has_its_own_numbering(webui_client):
    # img2img: 5 = CFG Scale (no Hires steps on this tab), 4 = Steps
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    result = webui_client.img2img(images=[source], prompt="a blue square", width=64, height=64, seed=5,
                                  denoising_strength=0.5, script_name="X/Y/Z Plot", script_args=_xyz(5, "2, 8"))
    assert _swept(result.info["infotexts"][1:], "CFG scale") == ["2", "8"]


def test_xyz_script_info_choices_index_the_axes_as_a1111(client):
    info = client.get("/sdapi/v1/script-info").json()
    xyz = {entry["is_img2img"]: entry for entry in info if entry["name"] == "x/y/z plot"}
    txt2img_types = next(arg["choices"] for arg in xyz[False]["args"] if arg["label"] == "X type")
    img2img_types = next(arg["choices"] for arg in xyz[True]["args"] if arg["label"] == "X type")
    assert (len(txt2img_types), len(img2img_types)) == (42, 41)
    assert txt2img_types.index("Steps") == 4 and txt2img_types.index("CFG Scale") == 6
    assert img2img_types.index("CFG Scale") == 5 and img2img_types.index("Image CFG Scale") == 6
    assert txt2img_types.index("VAE") == 29 and img2img_types.index("Size") == 40


def test_xyz_axis_easel_cannot_do_is_a_422_naming_the_argument(client, api):
    # txt2img 13 = Sigma Churn (a k-diffusion setting): refused before any image, never another axis
    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(
        script_name="x/y/z plot", script_args=_xyz(4, "1", 13, "0.1, 0.2")))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["script_args[3] (y_type)"]
    assert "Sigma Churn" in response.json()["detail"]
    init = png_b64(Image.new("RGB", (64, 64), (9, 9, 200)))
    response = client.post("/sdapi/v1/img2img", json=api.small_txt2img(
        init_images=[init], script_name="x/y/z plot", script_args=_xyz("Hires steps", "1, 2")))
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["script_args[0] (x_type)"]
    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(
        script_name="x/y/z plot", script_args=_xyz(99, "1")))
    assert response.status_code == 422 and "unknown axis type 99" in response.json()["detail"]


def test_xyz_user_errors_in_values_are_422s(client, api):
    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(
        script_name="x/y/z plot", script_args=_xyz(7, "purple, green")))  # 7 = Prompt S/R; 'purple' absent
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["script_args[1] (x_values)"]
    assert "purple" in response.json()["detail"]
    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(
        script_name="x/y/z plot", script_args=_xyz(4, "many")))
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["script_args[1] (x_values)"]


@pytest.mark.parametrize(("script", "args", "loc"), [
    ("prompt matrix", [False, False, "sideways", "comma", 0], "script_args[2] (prompt_type)"),
    ("prompts from file or textbox", [False, False, "start", "--steps many"], "script_args[3] (prompt_txt)"),
    ("prompts from file or textbox", [False, False, "start", "--colour red"], "script_args[3] (prompt_txt)"),
])
def test_script_user_errors_are_422s_naming_the_argument(client, api, script, args, loc):
    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(script_name=script, script_args=args))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == [loc]


def test_every_a1111_option_exists_with_its_default(client):
    options = client.get("/sdapi/v1/options").json()
    missing = sorted(set(A1111_OPTION_DEFAULTS) - set(options))
    assert not missing
    typed = set(Options.model_fields)
    for key, default in A1111_OPTION_DEFAULTS.items():
        if key not in typed and key not in ("sd_checkpoint_hash",):
            assert options[key] == default, key
    assert options["send_seed"] is True and options["img2img_background_color"] == "#ffffff"


def test_options_write_as_a1111s_own_test_does(client, easel):
    # A1111's test/test_utils.py::test_options_write, plus the type check a wrong client gets
    before = client.get("/sdapi/v1/options").json()["send_seed"]
    assert client.post("/sdapi/v1/options", json={"send_seed": not before}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["send_seed"] is (not before)
    saved = json.loads(easel.services.settings.data_paths.config_file.read_text())
    assert saved["send_seed"] is (not before)
    response = client.post("/sdapi/v1/options", json={"send_seed": "yes"})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["send_seed"]
    client.post("/sdapi/v1/options", json={"send_seed": before})


def test_current_model_names_the_loaded_checkpoint(webui_client, easel):
    loaded = easel.services.manager.current.info
    assert webui_client.util_get_current_model() == loaded.title
    titles = {model["title"]: model for model in webui_client.get_sd_models()}
    assert webui_client.util_get_current_model() in titles
    assert webui_client.get_options()["sd_checkpoint_hash"] == titles[loaded.title]["sha256"]


def test_sd_vae_is_applied_and_reported_only_when_applied(webui_client, client, easel):
    vae_dir = easel.services.settings.model_paths.vae
    vae_file = write_vae(easel.services.manager.current, vae_dir / "alt-vae.safetensors")
    try:
        assert {"model_name": "alt-vae.safetensors", "filename": str(vae_file)} in webui_client.get_sd_vae()
        request = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 2, "seed": 31}
        plain = webui_client.txt2img(**request)
        assert "VAE" not in plain.info["infotexts"][0]
        chosen = webui_client.txt2img(**request, override_settings={"sd_vae": "alt-vae.safetensors"})
        infotext = chosen.info["infotexts"][0]
        assert "VAE: alt-vae.safetensors" in infotext and f"VAE hash: {file_sha256(vae_file)[:10]}" in infotext
        assert chosen.info["sd_vae_name"] == "alt-vae.safetensors"
        difference = np.abs(np.asarray(chosen.image, int) - np.asarray(plain.image, int)).mean()
        assert difference > 1.0
        assert webui_client.txt2img(**request).image.tobytes() == plain.image.tobytes()  # nothing leaked
        # the option itself, as A1111 clients set it; an unknown name is refused, naming the option
        response = client.post("/sdapi/v1/options", json={"sd_vae": "no-such-vae.safetensors"})
        assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["sd_vae"]
        response = client.post("/sdapi/v1/txt2img", json={**request, "override_settings": {"sd_vae": "nope.pt"}})
        assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["override_settings.sd_vae"]
        # an infotext pasted from another install names a VAE this one lacks: the checkpoint's own, not a failure
        pasted = client.post("/sdapi/v1/txt2img", json={
            **request, "infotext": infotext.replace("alt-vae.safetensors", "elsewhere.pt")}).json()
        assert "VAE" not in json.loads(pasted["info"])["infotexts"][0]
        pixels = Image.open(io.BytesIO(base64.b64decode(pasted["images"][0]))).convert("RGB").tobytes()
        assert pixels == plain.image.convert("RGB").tobytes()
        webui_client.set_options({"sd_vae": "alt-vae.safetensors"})
        assert webui_client.txt2img(**request).image.tobytes() == chosen.image.tobytes()
        webui_client.set_options({"sd_vae": "None"})
        # the X/Y/Z VAE axis (txt2img 29) sweeps the same two decoders
        grid = webui_client.txt2img(**request, script_name="X/Y/Z Plot",
                                    script_args=_xyz(29, "None, alt-vae.safetensors"))
        assert [image.tobytes() for image in grid.images[1:]] == [plain.image.tobytes(), chosen.image.tobytes()]
        assert ["VAE:" in text for text in grid.info["infotexts"][1:]] == [False, True]
        none = webui_client.txt2img(**request)
        assert none.image.tobytes() == plain.image.tobytes() and "VAE" not in none.info["infotexts"][0]
    finally:
        webui_client.set_options({"sd_vae": "Automatic"})
        vae_file.unlink()


def test_setting_the_checkpoint_returns_once_it_is_loaded(tmp_path, tiny_sd_path, api, single_threaded_torch):
    import shutil

    import webui
    from tests.conftest import build_tiny_sd

    models = tmp_path / "models"
    shutil.copytree(tiny_sd_path, models / "Stable-diffusion" / "tiny-sd")
    build_tiny_sd(models / "Stable-diffusion" / "tiny-sd-2", seed=1)
    services = api.make_services(tmp_path / "data", models, ["--ckpt", "tiny-sd"])
    running = api.start_server(services)
    services.queue.start()
    try:
        webui.warm_up(services)
        client = webuiapi.WebUIApi(host="127.0.0.1", port=running.port)
        titles = {model["model_name"]: model["title"] for model in client.get_sd_models()}
        assert client.util_get_current_model() == titles["tiny-sd"]
        client.util_set_model("tiny-sd-2")  # POST /options; returns when the model is loaded, as in A1111
        titles = {model["model_name"]: model["title"] for model in client.get_sd_models()}  # now hashed, as A1111
        assert client.util_get_current_model() == titles["tiny-sd-2"] and titles["tiny-sd-2"].endswith("]")
        assert services.manager.current.info.model_name == "tiny-sd-2"
    finally:
        api.shutdown(running)
