"""A1111-style fixture extensions (``tests/extensions/fixtures``) on a real server, checked from outside.

``a1111style`` uses the surface real extensions use: settings through ``on_ui_settings``, an API route through
``on_app_started``, a ``Script`` defined in a helper module, ``preload.py`` flags, an ``install.py`` that
imports ``launch``, the image-saving callbacks. ``needs_ldm`` imports ``modules.sd_hijack`` and must be listed as
incompatible, with the reason. The server is started as ``webui.main`` does, with ``--nowebui``.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

import webui
from modules.core.settings import Settings
from modules.extensions.preload import preload_extensions
from tests.api.conftest import RunningServer, shutdown, start_server

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("a1111_runtime")
    extensions = root / "extensions"
    shutil.copytree(FIXTURES, extensions)
    argv = ["--data-dir", str(root / "data"), "--models-dir", str(tiny_models_dir), "--nowebui",
            "--allow-extension-install", "--a1111style-flag", "given"]
    settings = Settings.load(argv, {}, extend_parser=lambda parser: preload_extensions(parser, argv, [extensions]))
    services = webui.build_services(settings)
    services.script_dirs = []
    services.extension_roots = [extensions]
    app = webui.create_app(services)
    services.queue.start()
    running = start_server(services, app)
    webui.start_background(services, app, with_ui=False).join(300)
    assert services.startup_error is None, services.startup_error
    yield running
    shutdown(running)


@pytest.fixture()
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_app_started_route_reads_options_and_preload_flag(http: httpx.Client) -> None:
    info = http.get("/a1111style/info").json()
    assert info["greeting"] == "hello" and info["default"] == "hello" and info["count"] == 3
    assert info["flag"] == "given"  # declared in preload.py, parsed with Easel's own flags
    assert info["demo"] is False  # --nowebui: app_started(None, app)
    assert info["background"] == "#ffffff"  # an A1111 option key Easel does not use, with A1111's default
    assert info["release"] == 1101  # launch.git_tag(): the A1111 release Easel's contract follows (v1.10.1)


def test_extension_flags_are_parsed_and_unknown_flags_still_refused(tmp_path: Path) -> None:
    extensions = tmp_path / "extensions"
    shutil.copytree(FIXTURES / "a1111style", extensions / "a1111style")
    argv = ["--data-dir", str(tmp_path / "data")]
    settings = Settings.load(argv, {}, extend_parser=lambda parser: preload_extensions(parser, argv, [extensions]))
    assert settings.extension_flags["a1111style_flag"] == "unset"  # the extension's default
    with pytest.raises(SystemExit, match="--not-a-flag"):
        Settings.load([*argv, "--not-a-flag"], {},
                      extend_parser=lambda parser: preload_extensions(parser, argv, [extensions]))


def test_extension_options_listed_set_saved_and_checked(server: RunningServer, http: httpx.Client) -> None:
    options = http.get("/sdapi/v1/options").json()
    assert options["a1111style_greeting"] == "hello" and options["send_seed"] is True
    assert http.post("/sdapi/v1/options", json={"a1111style_greeting": "bonjour"}).status_code == 200
    info = http.get("/a1111style/info").json()
    assert info["greeting"] == "bonjour"
    assert info["changes"][-1] == "bonjour"  # the option's onchange ran after the value was stored
    config = json.loads(server.services.settings.data_paths.config_file.read_text())
    assert config["a1111style_greeting"] == "bonjour"
    refused = http.post("/sdapi/v1/options", json={"a1111style_count": "many"})
    assert refused.status_code == 422 and "a1111style_count" in refused.text
    assert http.get("/a1111style/info").json()["count"] == 3
    http.post("/sdapi/v1/options", json={"a1111style_greeting": "hello"})


def test_install_py_imports_launch(server: RunningServer) -> None:
    marker = server.services.extension_roots[0] / "a1111style" / "installed.txt"
    echoed, consent, cwd = marker.read_text().split("|")
    assert echoed == "42" and consent == "True"
    assert Path(cwd).resolve() == Path(webui.__file__).resolve().parent  # A1111 runs installers from its root


def test_helper_module_script_and_save_callbacks(server: RunningServer, http: httpx.Client) -> None:
    names = [entry["name"] for entry in http.get("/sdapi/v1/script-info").json()]
    assert "a1111 style helper" in names
    response = http.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "width": 64, "height": 64,
                                                    "steps": 2, "seed": 7, "save_images": True})
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert "A1111 style: hello" in info["infotexts"][0]
    pipe = server.services.manager.current.pipe
    side = 64 // pipe.vae_scale_factor
    latent = f"(1, {pipe.vae.config.latent_channels}, {side}, {side})"
    assert f'Sampling starts: "{latent}"' in info["infotexts"][0]  # process_before_every_sampling saw x
    record = http.get("/a1111style/saved").json()
    saved = record["saved"][-1]
    assert saved["has_p"] is True
    path = Path(saved["filename"])
    assert path.is_file() and path.is_relative_to(server.services.settings.data_paths.outputs)
    with Image.open(path) as image:
        parameters = image.info["parameters"]
    assert parameters.endswith(", Saved-by: a1111style")  # before_image_saved changed what was written
    assert "A1111 style: hello" in parameters
    assert record["seen"]["checkpoint"].startswith("tiny-sd")  # p.sd_model.sd_checkpoint_info.title
    assert "A1111 style: hello" in record["seen"]["infotext"]  # Processed.infotext(p, 0)
    import base64

    info = http.post("/sdapi/v1/png-info", json={"image": base64.b64encode(path.read_bytes()).decode()}).json()
    assert info["parameters"]["Pasted-by"] == "a1111style"  # infotext_pasted ran on the parsed parameters
    assert info["parameters"]["Seed"] == 7


def test_output_folder_options_name_the_folders_images_are_saved_in(server: RunningServer,
                                                                      http: httpx.Client) -> None:
    """Image browser extensions find the outputs through ``opts.outdir_*``: empty in Easel's settings (its own
    layout), they read as the folders Easel writes to."""
    response = http.post("/sdapi/v1/txt2img", json={"prompt": "a blue square", "width": 64, "height": 64,
                                                    "steps": 1, "seed": 3, "save_images": True})
    assert response.status_code == 200, response.text
    listed = http.get("/a1111style/outputs").json()
    outputs = server.services.settings.data_paths.outputs
    assert listed["folders"]["attribute"] == listed["folders"]["data"] == str(outputs / "txt2img-images")
    assert listed["folders"]["grids"] == str(outputs / "txt2img-grids")
    saved = [Path(name) for name in listed["files"]]
    assert saved and all(path.is_file() for path in saved)
    infotexts = []
    for path in saved:
        with Image.open(path) as image:
            infotexts.append(image.info.get("parameters", ""))
    assert any(text.startswith("a blue square") for text in infotexts)
    assert http.get("/sdapi/v1/options").json()["outdir_txt2img_samples"] == ""  # the setting itself stays empty


def test_hires_and_post_sample_hooks(server: RunningServer, http: httpx.Client) -> None:
    response = http.post("/sdapi/v1/txt2img", json={"prompt": "a red circle", "width": 64, "height": 64, "steps": 2,
                                                    "seed": 7, "enable_hr": True, "hr_scale": 2,
                                                    "denoising_strength": 0.5, "hr_second_pass_steps": 2})
    assert response.status_code == 200, response.text
    seen = http.get("/a1111style/saved").json()["seen"]
    pipe = server.services.manager.current.pipe
    side = 128 // pipe.vae_scale_factor
    assert seen["before_hr"] == 1
    assert seen["post_sample"] == [1, pipe.vae.config.latent_channels, side, side]  # after the hires pass
    assert seen["after_composite"] == [128, 128]


def test_extra_noise_callback_changes_pixels(server: RunningServer, http: httpx.Client) -> None:
    import base64
    import io

    import numpy as np

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buffer, format="PNG")
    request = {"prompt": "a red circle", "width": 64, "height": 64, "steps": 3, "seed": 5,
               "denoising_strength": 0.6, "init_images": [base64.b64encode(buffer.getvalue()).decode()]}

    def pixels(**extra: Any) -> Any:
        response = http.post("/sdapi/v1/img2img", json={**request, **extra})
        assert response.status_code == 200, response.text
        image = Image.open(io.BytesIO(base64.b64decode(response.json()["images"][0])))
        return np.asarray(image.convert("RGB"), dtype=np.int16), json.loads(response.json()["info"])

    plain, _ = pixels()
    calls: list[Any] = []

    def silence(params: Any) -> None:
        calls.append(tuple(params.noise.shape))
        params.noise = params.noise * 0

    server.services.callbacks.add("extra_noise", silence)
    try:
        silenced, info = pixels(override_settings={"img2img_extra_noise": 0.8})
    finally:
        server.services.callbacks.remove_function(silence)
    noisy, _ = pixels(override_settings={"img2img_extra_noise": 0.8})
    assert calls and "Extra noise: 0.8" in info["infotexts"][0]
    assert np.array_equal(silenced, plain)  # the callback replaced the extra noise by zeros
    assert np.abs(noisy - plain).mean() > 1  # without it, the extra noise changes the picture


def test_before_token_counter_changes_what_is_counted(server: RunningServer) -> None:
    from modules.ui.context import UiContext

    ctx = UiContext(server.services)
    plain, _ = ctx.token_count("a red circle {and|or} a blue square")
    seen: list[Any] = []

    def strip_braces(params: Any) -> None:
        seen.append((params.prompt, params.is_positive))
        params.prompt = params.prompt.split("{")[0]

    server.services.callbacks.add("before_token_counter", strip_braces)
    try:
        stripped, _ = ctx.token_count("a red circle {and|or} a blue square", is_positive=False)
    finally:
        server.services.callbacks.remove_function(strip_braces)
    assert seen == [("a red circle {and|or} a blue square", False)]
    assert 0 < stripped < plain


def test_ldm_extension_listed_as_incompatible(server: RunningServer, http: httpx.Client) -> None:
    status = {entry["name"]: entry for entry in http.get("/internal/extensions").json()}
    assert status["a1111style"]["status"] == "ok"
    assert status["needs_ldm"]["status"] == "incompatible"
    assert status["needs_ldm"]["needs"] == ["modules.sd_hijack"]
    assert "needs_ldm" in status["needs_ldm"]["reason"] and "modules.sd_hijack" in status["needs_ldm"]["reason"]
    titles = http.get("/sdapi/v1/scripts").json()["txt2img"]
    assert "needs hijack" not in titles
    from modules.ui.context import UiContext
    from modules.ui.extensions_tab import extension_rows

    ctx = UiContext(server.services)
    states = {row[0]: row[1] for row in extension_rows(ctx)}
    assert states["a1111style"] == "enabled"
    assert states["needs_ldm"].startswith("incompatible: ") and "modules.sd_hijack" in states["needs_ldm"]


def test_a1111_modules_answer_from_services(server: RunningServer) -> None:
    from modules import devices, hashes, paths, sd_models, sd_samplers
    from modules.infotext_utils import parse_generation_parameters

    services = server.services
    assert paths.models_path == str(services.settings.model_paths.root)
    assert paths.extensions_dir == str(services.extension_roots[0])
    assert [info.model_name for info in sd_models.checkpoints_list.values()] == ["tiny-sd"]
    assert sd_models.model_data.sd_model.sd_checkpoint_info.model_name == "tiny-sd"
    assert "euler a" in sd_samplers.samplers_map
    assert str(devices.device) == "cpu"
    weights = next(services.settings.model_paths.stable_diffusion.glob("tiny-sd/unet/*.safetensors"))
    assert hashes.sha256(str(weights)) == hashes.calculate_sha256(str(weights))
    from modules import scripts

    listed = {item.filename: item for item in scripts.list_scripts("scripts", ".py")}
    assert Path(listed["a1111_style.py"].basedir) == services.extension_roots[0] / "a1111style"
    assert "hijack.py" in listed  # A1111 lists the files of every enabled extension, loadable or not
    pasted: list[Any] = []
    services.callbacks.add("infotext_pasted", lambda text, params: pasted.append(params["Steps"]))
    parsed = parse_generation_parameters("a cat\nSteps: 12, Sampler: Euler, Seed: 3, Size: 64x64")
    assert parsed["Prompt"] == "a cat" and parsed["Size-1"] == 64 and pasted == [12]


def test_app_started_route_beside_mounted_ui(tmp_path: Path) -> None:
    """With the UI mounted at ``/`` first, a route an extension adds afterwards still answers (not the UI)."""
    import gradio as gr
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from modules.extensions.setup import app_started

    app = FastAPI()
    with gr.Blocks() as demo:
        gr.Markdown("ui")
    gr.mount_gradio_app(app, demo, path="/")
    seen: list[Any] = []

    def add_route(blocks: Any, fastapi_app: FastAPI) -> None:
        seen.append(blocks)
        fastapi_app.add_api_route("/late/route", lambda: {"late": True}, methods=["GET"])

    from modules.extensions.callbacks import CallbackRegistry

    registry = CallbackRegistry()
    registry.add("app_started", add_route)
    services: Any = type("S", (), {"callbacks": registry})()
    app_started(services, app)
    assert seen == [demo]
    with TestClient(app) as client:
        assert client.get("/late/route").json() == {"late": True}


def test_script_unloaded_and_before_reload_on_stop() -> None:
    from modules.extensions.callbacks import CallbackRegistry
    from modules.extensions.setup import stop

    registry = CallbackRegistry()
    order: list[str] = []
    registry.add("before_reload", lambda: order.append("before_reload"))
    registry.add("script_unloaded", lambda: order.append("script_unloaded"))
    services: Any = type("S", (), {"callbacks": registry})()
    stop(services, restarting=True)
    stop(services)
    assert order == ["before_reload", "script_unloaded", "script_unloaded"]


def _split_picture() -> str:
    image = Image.new("RGB", (8, 8), (200, 0, 0))
    image.paste((0, 0, 200), (4, 0, 8, 8))  # left half red, right half blue
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _decoded(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")


def test_postprocessing_script_runs_in_extras(http: httpx.Client) -> None:
    """The extension's ScriptPostprocessing (order 900) inverts before Easel's upscale (order 1000) and adds a
    mirrored extra image, which the upscale then processes too; the gated script gets None and does nothing."""
    payload = {"upscaler_1": "Nearest", "upscaling_resize": 2}
    single = http.post("/sdapi/v1/extra-single-image", json={**payload, "image": _split_picture()})
    assert single.status_code == 200, single.text
    body = single.json()
    image = _decoded(body["image"])
    assert image.size == (16, 16)  # the upscale ran after the script
    assert image.getpixel((0, 0)) == (55, 255, 255) and image.getpixel((15, 0)) == (255, 255, 55)  # inverted
    assert "A1111style invert: note=None, first pass width=8, width=8" in body["html_info"]
    assert "Postprocess upscaler: Nearest" in body["html_info"] and "blackout" not in body["html_info"]

    batch = http.post("/sdapi/v1/extra-batch-images",
                      json={**payload, "imageList": [{"data": _split_picture(), "name": "split.png"}]})
    assert batch.status_code == 200, batch.text
    main, mirrored = (_decoded(data) for data in batch.json()["images"])
    assert main.getpixel((0, 0)) == (55, 255, 255)
    assert mirrored.size == (16, 16)  # the extra image went through the steps after the one that added it
    assert mirrored.getpixel((0, 0)) == (255, 255, 55) and mirrored.getpixel((15, 0)) == (55, 255, 255)


def test_restrict_api_option_is_left_unchanged_by_the_api(server: RunningServer, http: httpx.Client) -> None:
    """A1111's rule: an API write never changes a ``restrict_api`` option; no error, the other keys are stored."""
    from modules import shared

    answer = http.post("/sdapi/v1/options", json={"a1111style_secret": "changed", "a1111style_count": 5})
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Easel-Ignored-Options"] == "a1111style_secret"
    options = http.get("/sdapi/v1/options").json()
    assert options["a1111style_secret"] == "keep" and options["a1111style_count"] == 5
    config = json.loads(server.services.settings.data_paths.config_file.read_text())
    assert config["a1111style_secret"] == "keep"
    unchanged = http.post("/sdapi/v1/options", json={"a1111style_secret": "keep"})  # a GET/POST round trip
    assert unchanged.status_code == 200 and "X-Easel-Ignored-Options" not in unchanged.headers
    assert shared.opts.set("a1111style_secret", "from-api", is_api=True) is False
    assert shared.opts.a1111style_secret == "keep"
    assert shared.opts.set("a1111style_secret", "from-code") is True  # extension code itself may change it
    assert http.get("/sdapi/v1/options").json()["a1111style_secret"] == "from-code"
    shared.opts.set("a1111style_secret", "keep")
    http.post("/sdapi/v1/options", json={"a1111style_count": 3})


def test_postprocessing_order_and_disable_options(http: httpx.Client) -> None:
    """A1111's ``postprocessing_operation_order`` puts Easel's Upscale step before the script (which then sees the
    upscaled image); ``postprocessing_disable_in_extras`` leaves the script out."""
    payload = {"upscaler_1": "Nearest", "upscaling_resize": 2, "image": _split_picture()}
    try:
        http.post("/sdapi/v1/options", json={"postprocessing_operation_order": ["Upscale", "A1111style invert"]})
        body = http.post("/sdapi/v1/extra-single-image", json=payload).json()
        assert "first pass width=8, width=16" in body["html_info"]
        http.post("/sdapi/v1/options", json={"postprocessing_operation_order": [],
                                             "postprocessing_disable_in_extras": ["A1111style invert"]})
        body = http.post("/sdapi/v1/extra-single-image", json=payload).json()
        assert _decoded(body["image"]).getpixel((0, 0)) == (200, 0, 0) and "invert" not in body["html_info"]
    finally:
        http.post("/sdapi/v1/options", json={"postprocessing_operation_order": [],
                                             "postprocessing_disable_in_extras": []})
