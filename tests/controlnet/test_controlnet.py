"""ControlNet: preprocessors, unit parsing, and a tiny real ControlNet steering Easel's denoising loop."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from modules.controlnet.preprocessors import build_registry, run_preprocessor
from modules.controlnet.service import ControlNetService
from modules.controlnet.units import ControlNetUnit
from modules.core.errors import UserInputError
from modules.core.settings import Options
from modules.processing.params import Img2ImgParams, Txt2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry
from tests.images import control_sketch, png_b64


# -- preprocessors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", build_registry().names())
def test_each_preprocessor_returns_a_control_image_of_the_asked_size(name: str) -> None:
    registry = build_registry()
    result = run_preprocessor(registry, name, control_sketch(), size=(40, 24), resolution=64)
    assert result.size == (40, 24) and result.mode == "RGB"


def test_preprocessors_do_what_they_say() -> None:
    registry = build_registry()
    sketch = control_sketch()
    assert np.array_equal(np.asarray(run_preprocessor(registry, "invert", sketch, resolution=48)),
                          255 - np.asarray(sketch))
    edges = np.asarray(run_preprocessor(registry, "canny", sketch, resolution=48))
    assert set(np.unique(edges)) <= {0, 255} and (edges == 255).any()
    lines = np.asarray(run_preprocessor(registry, "binary", sketch, threshold_a=128, resolution=48))
    assert lines[24, 8].max() == 255 and lines[0, 0].max() == 0  # the black stroke becomes white on black
    assert run_preprocessor(registry, "invert (from white bg & black line)", sketch).size == sketch.size
    with pytest.raises(UserInputError):
        run_preprocessor(registry, "depth_midas", sketch)


# -- units ---------------------------------------------------------------------------------------------------------
def test_unit_accepts_sd_webui_controlnet_shapes() -> None:
    unit = ControlNetUnit.model_validate({"input_image": "abc", "resize_mode": 0, "control_mode": 2,
                                          "processor_res": None, "model": "m [0123abcd]"})
    assert unit.image_data() == "abc"
    assert unit.resize_mode == "Just Resize" and unit.control_mode == "ControlNet is more important"
    assert unit.resolution == 512
    assert ControlNetUnit.model_validate({"resize_mode": "Inner Fit (Scale to Fit)"}).resize_mode == "Crop and Resize"
    with pytest.raises(ValueError):
        ControlNetUnit.model_validate({"control_mode": "Loud"})


# -- a tiny ControlNet on the tiny SD model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(loaded):
    return loaded


@pytest.fixture(scope="module")
def controlnet_dir(model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``models/ControlNet`` with a diffusers folder and the same weights as a single safetensors file."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("ControlNet")
    torch.manual_seed(1)
    # Embedding depth 2 (one stride-2 step) matches the tiny VAE's scale factor of 2.
    controlnet = ControlNetModel.from_unet(model.pipe.unet, conditioning_embedding_out_channels=(8, 16))
    with torch.no_grad():  # ControlNet's output convs start at zero; a trained one's are not
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                       controlnet.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0, 0.3)
            module.bias.normal_(0, 0.1)
    controlnet.save_pretrained(folder / "tiny-cn")
    weights = {key: value.contiguous() for key, value in controlnet.state_dict().items()}
    save_file(weights, str(folder / "tiny-cn-single.safetensors"))
    return folder


@pytest.fixture(scope="module")
def service(controlnet_dir: Path) -> ControlNetService:
    return ControlNetService(controlnet_dir)


BASE = {"prompt": "a red circle", "negative_prompt": "", "steps": 2, "width": 32, "height": 32, "seed": 11,
        "cfg_scale": 4.0, "sampler_name": "Euler"}


def _generate(model, service: ControlNetService | None, units: list[dict] | None, params_cls=Txt2ImgParams,
              **fields: object) -> tuple[np.ndarray, str]:
    alwayson = {"ControlNet": {"args": units}} if units is not None else {}
    params = params_cls(**{**BASE, **fields}, alwayson_scripts=alwayson)
    run = ProcessingRun(params, Options())
    if isinstance(params, Img2ImgParams):
        run.init_images = [control_sketch(32)]
    if service is not None:
        service.customize(run, params)
    processor = Processor(samplers=build_default_registry(), model_provider=lambda r: model)
    result = processor.process(run)
    return np.asarray(result.images[0], dtype=np.int16), result.infotexts[0]


def _unit(**fields: object) -> dict:
    return {"enabled": True, "module": "invert", "model": "tiny-cn", "weight": 1.0,
            "image": png_b64(control_sketch()), "processor_res": 64, **fields}


@pytest.fixture(scope="module")
def plain(model) -> np.ndarray:
    return _generate(model, None, None)[0]


def test_unit_changes_output_and_weight_zero_reproduces_plain(model, service, plain) -> None:
    controlled, info = _generate(model, service, [_unit()])
    assert np.abs(controlled - plain).mean() > 2.0
    assert 'ControlNet 0: "Module: invert, Model: tiny-cn, Weight: 1' in info
    zero, _ = _generate(model, service, [_unit(weight=0.0)])
    assert np.array_equal(zero, plain)
    disabled, _ = _generate(model, service, [_unit(enabled=False)])
    assert np.array_equal(disabled, plain)


def test_guidance_window_outside_the_run_is_plain(model, service, plain) -> None:
    late, _ = _generate(model, service, [_unit(guidance_start=0.9, guidance_end=1.0)])
    assert np.array_equal(late, plain)  # 2 steps: progress 0 and 0.5 never reach 0.9


def test_single_file_model_matches_the_folder(model, service) -> None:
    folder, _ = _generate(model, service, [_unit()])
    single, _ = _generate(model, service, [_unit(model="tiny-cn-single [deadbeef]")])
    assert np.abs(folder - single).max() <= 1


def test_multi_controlnet_and_control_modes(model, service) -> None:
    one, _ = _generate(model, service, [_unit()])
    two, info = _generate(model, service, [_unit(), _unit(module="canny", control_mode="My prompt is more important")])
    assert np.abs(one - two).mean() > 1.0
    assert "ControlNet 1:" in info
    strong, _ = _generate(model, service, [_unit(control_mode=2)])
    assert np.abs(one - strong).mean() > 1.0


def test_img2img_uses_the_init_image_without_unit_image(model, service) -> None:
    plain_i2i, _ = _generate(model, None, None, Img2ImgParams, denoising_strength=0.8)
    controlled, _ = _generate(model, service, [_unit(image=None)], Img2ImgParams, denoising_strength=0.8)
    assert np.abs(controlled - plain_i2i).mean() > 1.0


def test_bad_units_name_their_field(model, service) -> None:
    run = ProcessingRun(Txt2ImgParams(**BASE), Options())
    with pytest.raises(UserInputError) as info:
        service.attach(run, [_unit(model="missing")], "alwayson_scripts.controlnet.args")
    assert info.value.field == "alwayson_scripts.controlnet.args[0].model"
    with pytest.raises(UserInputError) as info:
        service.attach(run, [_unit(image=None)], "cn")
    assert info.value.field == "cn[0].image"
    with pytest.raises(UserInputError) as info:
        service.attach(run, [_unit(weight=5)], "cn")
    assert info.value.field == "cn[0].weight"


def test_routes(service, controlnet_dir: Path) -> None:
    from types import SimpleNamespace

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from modules.api.controlnet import build_router
    from modules.core.cpu_work import CpuWork

    app = FastAPI()
    app.include_router(build_router(SimpleNamespace(controlnet=service, cpu_work=CpuWork(1))))
    client = TestClient(app)
    assert client.get("/controlnet/model_list").json() == {"model_list": ["tiny-cn", "tiny-cn-single"]}
    modules = client.get("/controlnet/module_list").json()
    assert {"none", "canny", "invert", "lineart_standard"} <= set(modules["module_list"])
    assert modules["module_detail"]["canny"]["sliders"][1]["name"] == "Canny Low Threshold"
    aliased = client.get("/controlnet/module_list", params={"alias_names": True}).json()["module_list"]
    assert "invert (from white bg & black line)" in aliased
    payload = {"controlnet_module": "canny", "controlnet_input_images": [png_b64(control_sketch())],
               "controlnet_processor_res": 48}
    detected = client.post("/controlnet/detect", json=payload).json()
    image = Image.open(io.BytesIO(base64.b64decode(detected["images"][0])))
    assert image.size == (48, 48) and detected["info"] == "Success"
