"""``/sdapi/v1`` against a real server: the ``webuiapi`` client (a real third-party A1111 client) plus plain HTTP."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import pytest
import webuiapi
from PIL import Image


@pytest.fixture(scope="module")
def webui_client(easel):
    return webuiapi.WebUIApi(host="127.0.0.1", port=easel.port, sampler="Euler", steps=2)


def _decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


# -- webuiapi ---------------------------------------------------------------------------------------------------


def test_webuiapi_txt2img_returns_png_with_infotext_and_info_json(webui_client):
    result = webui_client.txt2img(prompt="a red circle", width=64, height=64, steps=2, seed=42, cfg_scale=5)
    assert len(result.images) == 1
    image = result.images[0]
    assert image.format == "PNG" and image.size == (64, 64)
    assert "Steps: 2" in image.info["parameters"] and "Seed: 42" in image.info["parameters"]
    assert result.info["seed"] == 42 and result.info["width"] == 64 and result.info["steps"] == 2
    assert result.info["sampler_name"] == "Euler"
    assert result.parameters["prompt"] == "a red circle" and result.parameters["cfg_scale"] == 5
    # the same seed gives the same pixels
    again = webui_client.txt2img(prompt="a red circle", width=64, height=64, steps=2, seed=42, cfg_scale=5)
    assert again.images[0].tobytes() == image.tobytes()


def test_webuiapi_img2img_and_png_info(webui_client):
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    result = webui_client.img2img(images=[source], prompt="a blue square", width=64, height=64, steps=2, seed=7,
                                  denoising_strength=0.5)
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    assert result.parameters["init_images"] is None  # include_init_images=false: not echoed, as in A1111
    assert result.info["denoising_strength"] == 0.5
    info = webui_client.png_info(result.images[0])
    assert info.parameters["Prompt"] == "a blue square"
    assert info.parameters["Steps"] == 2 and info.parameters["Seed"] == 7
    assert info.info.startswith("a blue square")


def test_webuiapi_options_models_samplers(webui_client, easel):
    options = webui_client.get_options()
    assert options["samples_format"] == "png" and "sd_model_checkpoint" in options
    webui_client.set_options({"jpeg_quality": 91, "some_a1111_only_key": "kept"})
    options = webui_client.get_options()
    assert options["jpeg_quality"] == 91 and options["some_a1111_only_key"] == "kept"
    saved = json.loads(easel.services.settings.data_paths.config_file.read_text())
    assert saved["jpeg_quality"] == 91
    models = webui_client.get_sd_models()
    assert [model["model_name"] for model in models] == ["tiny-sd"]
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(models[0])
    webui_client.set_options({"sd_model_checkpoint": models[0]["title"]})  # known: accepted
    names = [sampler["name"] for sampler in webui_client.get_samplers()]
    assert {"Euler", "Euler a", "DPM++ 2M", "DDIM"} <= set(names)


def test_webuiapi_interrupt_returns_partial_result(webui_client, client, api):
    box: dict[str, object] = {}

    def run() -> None:
        box["result"] = webui_client.txt2img(prompt="a cat", width=64, height=64, steps=400, seed=3)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 60
    while client.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 1:
        assert time.monotonic() < deadline, "the job never started sampling"
        time.sleep(0.05)
    assert webui_client.interrupt() == {}
    thread.join(60)
    result = box["result"]  # a 200 with what was finished (A1111 semantics), flagged as interrupted
    assert result.info["interrupted"] is True and len(result.images) <= 1
    api.wait_idle(client)


# -- plain HTTP: generation details -----------------------------------------------------------------------------


def test_txt2img_send_images_false_force_task_id_and_infotext(client, api):
    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(send_images=False, force_task_id="task(t1)"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["images"] == [] and json.loads(body["info"])["seed"] == 1234
    job = client.get("/sdapi/v2/jobs/task(t1)").json()
    assert job["status"] == "succeeded" and job["source"] == "api-v1"
    # the same id twice is refused, naming the field
    again = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(force_task_id="task(t1)"))
    assert again.status_code == 422 and "force_task_id" in again.text
    # infotext fills fields the client did not set; explicit fields win
    infotext = ("a green triangle\nNegative prompt: blurry\n"
                "Steps: 3, Sampler: DPM++ 2M Karras, CFG scale: 4, Seed: 99, Size: 64x64")
    response = client.post("/sdapi/v1/txt2img", json={"infotext": infotext, "seed": 5, "send_images": False})
    assert response.status_code == 200, response.text
    params = response.json()["parameters"]
    assert params["prompt"] == "a green triangle" and params["negative_prompt"] == "blurry"
    assert params["steps"] == 3 and params["cfg_scale"] == 4 and params["seed"] == 5
    assert params["sampler_name"] == "DPM++ 2M" and params["scheduler"] == "Karras"
    info = json.loads(response.json()["info"])
    assert info["seed"] == 5 and info["steps"] == 3


def test_validation_errors_name_the_field(client, api):
    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(width=65))
    assert response.status_code == 422
    body = response.json()
    assert set(body) >= {"error", "detail", "body", "errors"}
    assert body["errors"][0]["loc"][-1] == "width" and "width" in body["detail"]

    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(sampler_name="Nope 3000"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["sampler_name"] and "Nope 3000" in response.json()["detail"]

    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(sampler_name="DPM++ 2M Karras"))
    assert response.status_code == 200  # the schedule suffix is split off, as in A1111

    response = client.post("/sdapi/v1/txt2img",
                           json=api.small_txt2img(override_settings={"sd_model_checkpoint": "missing.safetensors"}))
    assert response.status_code == 422 and "sd_model_checkpoint" in response.json()["detail"]

    response = client.post("/sdapi/v1/img2img", json=api.small_txt2img())
    assert response.status_code == 422 and "init_images" in response.json()["detail"]
    response = client.post("/sdapi/v1/img2img", json=api.small_txt2img(init_images=["not base64!"]))
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["init_images[0]"]


def test_unknown_checkpoint_in_options_is_refused(client):
    before = client.get("/sdapi/v1/options").json()["sd_model_checkpoint"]
    response = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "no-such-model"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["sd_model_checkpoint"]
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == before
    response = client.post("/sdapi/v1/options", json={"samples_format": "bmp"})
    assert response.status_code == 422 and "samples_format" in response.json()["detail"]


def test_restore_faces_without_model_is_answered_with_a_note(client, api):
    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(restore_faces=True))
    assert response.status_code == 200
    assert len(response.json()["images"]) == 1


def test_progress_shape_and_headers(client):
    response = client.get("/sdapi/v1/progress", params={"skip_current_image": True})
    assert response.status_code == 200
    assert float(response.headers["X-Process-Time"]) >= 0 and response.headers["X-Request-Id"]
    body = response.json()
    assert set(body) == {"progress", "eta_relative", "state", "current_image", "textinfo"}
    assert set(body["state"]) == {"skipped", "interrupted", "stopping_generation", "job", "job_count",
                                  "job_timestamp", "job_no", "sampling_step", "sampling_steps"}
    assert body["current_image"] is None


def test_options_and_progress_answer_while_a_long_job_runs(client, api):
    job = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "params": api.small_txt2img(steps=400)}).json()
    api.wait_status(client, job["id"], {"running"})
    deadline = time.monotonic() + 30
    while client.get("/sdapi/v1/progress").json()["state"]["sampling_step"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(3):
        started = time.perf_counter()
        assert client.get("/sdapi/v1/options").status_code == 200
        assert client.post("/sdapi/v1/options", json={"jpeg_quality": 85}).status_code == 200
        assert client.get("/sdapi/v1/sd-models").status_code == 200
        assert time.perf_counter() - started < 2.0
    progress = client.get("/sdapi/v1/progress").json()
    assert progress["state"]["job"] == "txt2img" and 0 < progress["progress"] < 1
    assert progress["state"]["sampling_steps"] == 400
    # A1111's UI poll for the same task
    internal = client.post("/internal/progress", json={"id_task": job["id"], "id_live_preview": -1}).json()
    assert internal["active"] is True and internal["completed"] is False
    assert client.delete(f"/sdapi/v2/jobs/{job['id']}").json()["status"] == "cancelled"


def test_extras_single_and_batch(client):
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), (10, 200, 10)).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    response = client.post("/sdapi/v1/extra-single-image",
                           json={"image": data, "upscaler_1": "Lanczos", "upscaling_resize": 2})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"html_info", "image"}
    assert _decode(response.json()["image"]).size == (32, 16)
    response = client.post("/sdapi/v1/extra-batch-images", json={
        "imageList": [{"data": data, "name": "a.png"}, {"data": data, "name": "b.png"}],
        "resize_mode": 1, "upscaling_resize_w": 20, "upscaling_resize_h": 20, "upscaler_1": "Nearest"})
    assert response.status_code == 200, response.text
    assert [_decode(item).size for item in response.json()["images"]] == [(20, 20), (20, 20)]
    response = client.post("/sdapi/v1/extra-single-image", json={"image": data, "upscaler_1": "ESRGAN_9x"})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["upscaler_1"]


def test_list_and_misc_routes_answer_in_a1111_shapes(client):
    expectations = {
        "/sdapi/v1/schedulers": list, "/sdapi/v1/upscalers": list, "/sdapi/v1/latent-upscale-modes": list,
        "/sdapi/v1/sd-vae": list, "/sdapi/v1/hypernetworks": list, "/sdapi/v1/face-restorers": list,
        "/sdapi/v1/realesrgan-models": list, "/sdapi/v1/prompt-styles": list, "/sdapi/v1/embeddings": dict,
        "/sdapi/v1/scripts": dict, "/sdapi/v1/script-info": list, "/sdapi/v1/extensions": list,
        "/sdapi/v1/loras": list, "/sdapi/v1/memory": dict, "/sdapi/v1/cmd-flags": dict,
        "/internal/pending-tasks": dict, "/internal/ping": dict,
    }
    for path, kind in expectations.items():
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        assert isinstance(response.json(), kind), path
    scripts = client.get("/sdapi/v1/scripts").json()
    assert set(scripts) == {"txt2img", "img2img"} and all(isinstance(name, str) for name in scripts["txt2img"])
    assert set(client.get("/sdapi/v1/embeddings").json()) == {"loaded", "skipped"}
    upscalers = {item["name"] for item in client.get("/sdapi/v1/upscalers").json()}
    assert {"None", "Lanczos", "Nearest"} <= upscalers
    assert {"name": "Latent"} in client.get("/sdapi/v1/latent-upscale-modes").json()
    assert client.get("/sdapi/v1/memory").json()["ram"]["total"] > 0
    assert {"name": "karras", "label": "Karras"}.items() <= client.get("/sdapi/v1/schedulers").json()[2].items()
    for path in ("/sdapi/v1/refresh-checkpoints", "/sdapi/v1/refresh-vae", "/sdapi/v1/refresh-embeddings",
                 "/sdapi/v1/refresh-loras", "/sdapi/v1/skip", "/sdapi/v1/interrupt"):
        assert client.post(path).status_code == 200, path
    stop = client.post("/sdapi/v1/server-stop")
    assert stop.status_code == 403 and "--api-server-stop" in stop.json()["detail"]
    assert client.get("/docs").status_code == 200
    assert "/sdapi/v2/jobs" in client.get("/openapi.json").json()["paths"]


def test_unload_and_reload_checkpoint_go_through_the_queue(client, easel, api):
    assert client.post("/sdapi/v1/unload-checkpoint").status_code == 200
    assert easel.services.manager.current is None
    assert client.post("/sdapi/v1/reload-checkpoint").status_code == 200
    assert easel.services.manager.current.info.model_name == "tiny-sd"
    kinds = [job["type"] for job in client.get("/sdapi/v2/jobs", params={"newest_first": True, "limit": 2}).json()[
        "jobs"]]
    assert kinds == ["reload-model", "unload-model"]


def test_png_info_of_an_image_without_metadata(client):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    response = client.post("/sdapi/v1/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()})
    assert response.status_code == 200 and response.json() == {"info": "", "items": {}, "parameters": {}}
    response = client.post("/sdapi/v1/png-info", json={"image": "@@@"})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["image"]
