"""Face restoration and the hires checkpoint through ``/sdapi/v1``: the face-restorers list, the extras note when
no face model is installed, and an unknown ``hr_checkpoint_name`` refused naming the field."""

from __future__ import annotations

import base64
import io

from PIL import Image


def _png(width: int = 16, height: int = 16) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 150, 120)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_face_restorers_lists_the_installed_models(tmp_path, api):
    import torch
    from safetensors.torch import save_file

    from modules.faces.service import FaceRestorerService

    models = tmp_path / "models"
    (models / "GFPGAN").mkdir(parents=True)
    save_file({"w": torch.zeros(1)}, str(models / "GFPGAN" / "GFPGANv1.4.safetensors"))  # listed by file; loaded on use
    services = api.make_services(tmp_path / "data", models)
    services.faces = FaceRestorerService(services.settings.model_paths)
    services.ready.set()  # the one warm-up step this test needs is done
    running = api.start_server(services)
    try:
        with running.client() as http:
            response = http.get("/sdapi/v1/face-restorers")
    finally:
        api.shutdown(running)
    assert response.status_code == 200
    assert response.json() == [{"name": "GFPGAN", "cmd_dir": str(models / "GFPGAN")}]


def test_extras_without_a_face_model_answers_with_a_note(client):
    response = client.post("/sdapi/v1/extra-single-image",
                           json={"image": _png(), "upscaler_1": "Lanczos", "upscaling_resize": 2,
                                 "gfpgan_visibility": 0.8})
    assert response.status_code == 200, response.text
    assert "GFPGAN face restoration skipped: no GFPGAN model is installed" in response.json()["html_info"]
    assert response.json()["image"]
    assert client.get("/sdapi/v1/face-restorers").json() == []


def test_unknown_hires_checkpoint_is_a_422_naming_the_field(client, api):
    response = client.post("/sdapi/v1/txt2img", json=api.small_txt2img(enable_hr=True, hr_checkpoint_name="nope"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["hr_checkpoint_name"]
    assert "unknown checkpoint 'nope'" in response.json()["detail"]
