"""Resource limits: requests that would need minutes or gigabytes are refused before any work, so time and memory
stay bounded (measured: elapsed time and the process's peak RSS, under generous bounds a regression would blow:
the requests below needed 40 s and 7 GB, or a MemoryError, before the limits existed); the limits are launch
flags whose values the answers name."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from tests.images import control_sketch, png_b64

SKETCH = png_b64(control_sketch(64))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


HEAVY = [
    ("/controlnet/detect", {"controlnet_module": "canny", "controlnet_input_images": [SKETCH],
                            "controlnet_processor_res": 16000}, "controlnet_processor_res"),
    ("/controlnet/detect", {"controlnet_module": "canny", "controlnet_input_images": [SKETCH],
                            "controlnet_processor_res": 2**62}, "controlnet_processor_res"),
    ("/sdapi/v1/extra-single-image", {"image": png_b64(Image.new("RGB", (1024, 512))), "upscaler_1": "Lanczos",
                                      "resize_mode": 1, "upscaling_resize_w": 8192, "upscaling_resize_h": 8192},
     "upscaling_resize_w"),
    ("/sdapi/v1/img2img", {"init_images": [SKETCH], "width": 64, "height": 64, "steps": 1,
                           "script_name": "sd upscale", "script_args": ["", 16, "Lanczos", 1e6]}, "script_args[3]"),
    ("/sdapi/v1/img2img", {"init_images": [SKETCH], "width": 64, "height": 64, "steps": 1,
                           "script_name": "loopback", "script_args": [1_000_000, 0.5, "Linear", "None"]},
     "script_args[0]"),
    ("/sdapi/v1/img2img", {"init_images": [SKETCH], "width": 64, "height": 64, "steps": 1,
                           "script_name": "poor man's outpainting", "script_args": [100000, 4, "fill", ["left"]]},
     "script_args[0]"),
]


@pytest.mark.parametrize(("path", "body", "field"), HEAVY, ids=[f"{p}:{f}" for p, _, f in HEAVY])
def test_heavy_requests_are_refused_in_bounded_time_and_memory(client: Any, path: str, body: dict[str, Any],
                                                               field: str) -> None:
    peak_before = _peak_mib()
    started = time.monotonic()
    response = client.post(path, json=body)
    elapsed = time.monotonic() - started
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert elapsed < 10, f"{elapsed:.1f} s"
    assert _peak_mib() - peak_before < 200


def test_allowed_detect_stays_bounded(client: Any) -> None:
    """The largest allowed resolution on a small image: done, at that resolution, in seconds, within MiBs."""
    peak_before = _peak_mib()
    started = time.monotonic()
    response = client.post("/controlnet/detect", json={"controlnet_module": "canny", "controlnet_input_images":
                                                       [SKETCH], "controlnet_processor_res": 2048})
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 30
    assert _peak_mib() - peak_before < 300


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Any, api: Any) -> Iterator[Any]:
    """A server launched with small limits, warmed up without loading a model (detect needs none)."""
    import webui

    services = api.make_services(tmp_path_factory.mktemp("limits-data"), tiny_models_dir,
                                 ["--max-processor-res", "128", "--max-image-pixels", "20000"])
    running = api.start_server(services)
    webui.warm_up(services, load_model=False)
    assert services.ready.is_set() and services.startup_error is None, services.startup_error
    yield running
    api.shutdown(running)


def test_limits_are_launch_flags(tight_server: Any) -> None:
    with tight_server.client() as http:
        small = {"controlnet_module": "canny", "controlnet_input_images": [SKETCH]}
        assert http.post("/controlnet/detect", json={**small, "controlnet_processor_res": 128}).status_code == 200
        refused = http.post("/controlnet/detect", json={**small, "controlnet_processor_res": 256})
        assert refused.status_code == 422 and "--max-processor-res" in refused.json()["detail"]
        assert "1..128" in refused.json()["detail"]
        big = png_b64(Image.new("RGB", (150, 150)))  # 22500 pixels > 20000
        refused = http.post("/controlnet/detect", json={**small, "controlnet_input_images": [big],
                                                        "controlnet_processor_res": 64})
        assert refused.status_code == 422 and "controlnet_input_images[0]" in refused.json()["detail"]
        assert "--max-image-pixels" in refused.json()["detail"]
        flags = http.get("/sdapi/v1/cmd-flags").json()
        assert flags["max_processor_res"] == 128 and flags["max_image_pixels"] == 20000
