"""The extras job: upscale by factor or to a size, blend two upscalers, note missing face restoration, save."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from modules.core.errors import UserInputError
from modules.core.settings import CmdFlags, Options, Settings
from modules.processing.extras import ExtrasService, parse_extras_payload
from modules.processing.image_metadata import read_infotext
from modules.processing.image_store import ImageStore
from modules.upscalers.service import UpscalerService
from tests.images import png_b64


def _picture(width: int = 24, height: int = 16, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "models" / "ESRGAN").mkdir(parents=True)
    settings = Settings(CmdFlags(data_dir=tmp_path / "data", models_dir=tmp_path / "models"), Options())
    settings.data_paths.ensure()
    return settings


@pytest.fixture()
def service(settings: Settings) -> ExtrasService:
    store = ImageStore(settings.data_paths.outputs, lambda: settings.options)
    return ExtrasService(settings=settings, upscalers=UpscalerService(settings.model_paths.esrgan),
                         image_store=store)


def _run(service: ExtrasService, payload: dict, job_id: str = "job1") -> dict:
    job = SimpleNamespace(id=job_id, payload=payload, kind="extras")
    ctx = SimpleNamespace(should_stop=lambda: False, report=lambda *args, **kwargs: None)
    return service.run_job(job, ctx)


def _open(settings: Settings, job_id: str, name: str) -> Image.Image:
    return Image.open(settings.data_paths.job_results / job_id / name)


def test_upscale_by_factor(service: ExtrasService, settings: Settings) -> None:
    result = _run(service, {"image": png_b64(_picture()), "upscaler_1": "Lanczos", "upscaling_resize": 2})
    assert result["images"] == ["000.png"]
    assert _open(settings, "job1", "000.png").size == (48, 32)
    assert "Postprocess upscale by: 2, Postprocess upscaler: Lanczos" in result["html_info"]


@pytest.mark.parametrize("crop, size", [(True, (40, 40)), (False, (60, 40))])
def test_upscale_to_size(service: ExtrasService, settings: Settings, crop: bool, size: tuple[int, int]) -> None:
    payload = {"image": png_b64(_picture()), "upscaler_1": "Nearest", "resize_mode": 1, "upscaling_resize_w": 40,
               "upscaling_resize_h": 40, "upscaling_crop": crop}
    _run(service, payload)
    assert _open(settings, "job1", "000.png").size == size


def test_second_upscaler_is_blended_by_visibility(service: ExtrasService) -> None:
    image = _picture()
    params = parse_extras_payload({"upscaler_1": "Lanczos", "upscaler_2": "Nearest", "upscaling_resize": 2,
                                   "extras_upscaler_2_visibility": 1.0})
    blended = service.process(params, images=[(image, "")]).images[0]
    nearest = image.resize((48, 32), Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(blended), np.asarray(nearest))
    params = params.model_copy(update={"extras_upscaler_2_visibility": 0.5})
    half = np.asarray(service.process(params, images=[(image, "")]).images[0], dtype=np.int16)
    lanczos = np.asarray(image.resize((48, 32), Image.Resampling.LANCZOS), dtype=np.int16)
    expected = (lanczos + np.asarray(nearest, dtype=np.int16)) / 2
    assert np.abs(half - expected).max() <= 1


def test_missing_face_restorer_is_a_note_not_a_failure(service: ExtrasService, settings: Settings) -> None:
    result = _run(service, {"image": png_b64(_picture()), "upscaler_1": "Lanczos", "gfpgan_visibility": 0.5,
                            "codeformer_visibility": 1.0})
    assert _open(settings, "job1", "000.png").size == (48, 32)
    assert "GFPGAN face restoration skipped" in result["html_info"]
    assert "CodeFormer face restoration skipped" in result["html_info"]


def test_batch_and_saving(service: ExtrasService, settings: Settings) -> None:
    payload = {"imageList": [{"data": png_b64(_picture(seed=1)), "name": "one.png"},
                             {"data": "data:image/png;base64," + png_b64(_picture(16, 16, seed=2)), "name": "two.png"}],
               "upscaler_1": "Lanczos", "upscaling_resize": 3, "save_images": True}
    result = _run(service, payload, "batch")
    assert result["images"] == ["000.png", "001.png"]
    assert _open(settings, "batch", "001.png").size == (48, 48)
    saved = sorted((settings.data_paths.outputs / "extras-images").rglob("*.png"))
    assert len(saved) == 2
    text, _ = read_infotext(Image.open(saved[0]))
    assert text is not None and "Postprocess upscaler: Lanczos" in text


def test_generation_infotext_is_kept(service: ExtrasService) -> None:
    from modules.processing.image_metadata import embed_infotext

    data = embed_infotext(_picture(), "a cat\nSteps: 3, Seed: 1", "png", 80)
    result = _run(service, {"image": base64.b64encode(data).decode(), "upscaler_1": "Lanczos"})
    assert result["infotexts"][0].startswith("a cat\nSteps: 3, Seed: 1\nPostprocess upscale by: 2")


def test_unknown_upscaler_and_bad_image_name_their_fields(service: ExtrasService) -> None:
    with pytest.raises(UserInputError) as info:
        _run(service, {"image": png_b64(_picture()), "upscaler_1": "Nope"})
    assert info.value.field == "upscaler_1"
    with pytest.raises(UserInputError) as info:
        _run(service, {"image": "not base64!", "upscaler_1": "Lanczos"})
    assert info.value.field == "image"


def test_warm_up_registers_the_upscalers_and_the_extras_runner(settings: Settings) -> None:
    import webui

    services = webui.build_services(settings)
    try:
        webui.warm_up(services, load_model=False)
        assert services.startup_error is None
        assert "extras" in services.runners
        assert services.upscalers is not None and services.extras is not None
        listed = services.upscalers.list()
        assert [item["name"] for item in listed][:3] == ["None", "Lanczos", "Nearest"]
        assert services.upscalers.latent_modes()[0] == {"name": "Latent"}
        assert services.extras.face_restorers is services.faces
    finally:
        services.job_store.close()
