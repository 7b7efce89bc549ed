"""The built-in extras runner used when no extension registered ``extras``: Pillow resizes with real images."""

from __future__ import annotations

import base64
import time
from types import SimpleNamespace

import pytest
from PIL import Image

from modules.api.runners import run_builtin_extras, upscale_image
from modules.core.errors import UserInputError
from modules.core.limits import Limits
from modules.jobs import Job, JobContext
from modules.processing.image_metadata import embed_infotext


def _b64(image: Image.Image, infotext: str | None = None) -> str:
    return base64.b64encode(embed_infotext(image, infotext, "png")).decode()


def test_builtin_extras_resizes_and_keeps_infotext(tmp_path):
    services = SimpleNamespace(settings=SimpleNamespace(data_paths=SimpleNamespace(job_results=tmp_path),
                                                        limits=Limits()))
    source = Image.new("RGB", (10, 6), (255, 0, 0))
    payload = {"imageList": [{"data": _b64(source, "a red box\nSteps: 2, Seed: 1, Size: 10x6"), "name": "x"}],
               "upscaler_1": "Nearest", "upscaling_resize": 3, "codeformer_visibility": 0.5}
    job = Job(id="extras1", seq=1, kind="extras-builtin", payload=payload, created_at=time.time())
    result = run_builtin_extras(services, job, JobContext(job))
    assert result["images"] == ["000.png"]
    out = Image.open(tmp_path / "extras1" / "000.png")
    assert out.size == (30, 18) and out.getpixel((29, 17)) == (255, 0, 0)
    assert out.info["parameters"].startswith("a red box")
    assert "face restoration is not available" in result["html_info"]


def test_builtin_extras_refuses_outputs_over_the_limit(tmp_path):
    """A job queued without the route's checks (the UI's path) still stops before resizing: 30x18 > 500 pixels."""
    services = SimpleNamespace(settings=SimpleNamespace(data_paths=SimpleNamespace(job_results=tmp_path),
                                                        limits=Limits(max_output_pixels=500)))
    payload = {"image": _b64(Image.new("RGB", (10, 6)), None), "upscaler_1": "Nearest", "upscaling_resize": 3}
    job = Job(id="extras2", seq=1, kind="extras-builtin", payload=payload, created_at=time.time())
    with pytest.raises(UserInputError) as caught:
        run_builtin_extras(services, job, JobContext(job))
    assert caught.value.field == "upscaling_resize" and "--max-output-pixels" in caught.value.message
    assert not list((tmp_path / "extras2").glob("*.png"))


def test_builtin_extras_resize_to_size_with_crop_and_unknown_upscaler():
    image = Image.new("RGB", (20, 10))
    resized, notes = upscale_image(image, {"resize_mode": 1, "upscaling_resize_w": 16, "upscaling_resize_h": 16,
                                           "upscaler_1": "Lanczos"})
    assert resized.size == (16, 16) and notes[0] == "Postprocess upscale to: 16x16"
    assert upscale_image(image, {"upscaler_1": "None"})[0] is image
    with pytest.raises(UserInputError) as caught:
        upscale_image(image, {"upscaler_1": "SwinIR 4x"})
    assert caught.value.field == "upscaler_1"
