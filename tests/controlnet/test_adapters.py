"""SDXL ControlNet, T2I-Adapters and IP-Adapters on tiny real SD1.x and SDXL pipelines built in fixtures.

Every "weight 0 / outside the guidance range reproduces the plain output" check is bit-for-bit: such a unit is
not run at all, so the loop takes exactly the plain path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modules.controlnet.service import ControlNetService
from modules.core.errors import UserInputError
from modules.core.settings import Options
from modules.devices.select import select_device
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.families import FAMILIES
from modules.models.manager import ModelManager
from modules.processing.params import Img2ImgParams, Txt2ImgParams
from modules.processing.processor import Processor
from modules.processing.run import ProcessingRun
from modules.processing.samplers import build_default_registry
from tests.images import control_sketch, png_b64
from tests.tiny_pipelines import build_tiny_pipeline

FIELD = "alwayson_scripts.ControlNet.args"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """The machine is shared; tiny models gain nothing from more threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# -- tiny checkpoints and control models ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    for family in ("sd15", "sdxl"):
        build_tiny_pipeline(FAMILIES[family]).save_pretrained(root / "Stable-diffusion" / f"tiny-{family}",
                                                              safe_serialization=True)
    return root


def _load(models_root: Path, name: str) -> Any:
    catalog = CheckpointCatalog(models_root / "Stable-diffusion", HashCache(models_root / f"hashes-{name}.json"))
    catalog.refresh()
    manager = ModelManager(catalog, select_device(use_cpu=True, device_id=None, precision="full", no_half=True))
    return manager.ensure_loaded(name)


@pytest.fixture(scope="module")
def sd15(models_root: Path) -> Any:
    return _load(models_root, "tiny-sd15")


@pytest.fixture(scope="module")
def sdxl(models_root: Path) -> Any:
    return _load(models_root, "tiny-sdxl")


def _tiny_controlnet(unet: Any, seed: int) -> Any:
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    # Embedding depth 2 (one stride-2 step) matches the tiny VAE's scale factor of 2.
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16))
    with torch.no_grad():  # ControlNet's output convs start at zero; a trained one's are not
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                       controlnet.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0, 0.3)
            module.bias.normal_(0, 0.1)
    return controlnet


def _tiny_ip_adapter(unet: Any, image_dim: int, seed: int) -> dict[str, torch.Tensor]:
    """A plain IP-Adapter state dict in the layout diffusers' ``load_ip_adapter`` reads: ``image_proj.*`` (a
    linear projection to 4 tokens + LayerNorm) and ``ip_adapter.{1,3,5...}.to_k_ip/to_v_ip`` per cross-attention."""
    generator = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    state = {
        "image_proj.proj.weight": torch.randn(cross * 4, image_dim, generator=generator) * 0.5,
        "image_proj.proj.bias": torch.zeros(cross * 4),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            inner = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
            for projection in ("to_k_ip", "to_v_ip"):
                state[f"ip_adapter.{key}.{projection}.weight"] = torch.randn(inner, cross, generator=generator)
            key += 2
    return state


@pytest.fixture(scope="module")
def controlnet_dir(sd15: Any, sdxl: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from diffusers import T2IAdapter
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = tmp_path_factory.mktemp("ControlNet")
    _tiny_controlnet(sdxl.pipe.unet, 1).save_pretrained(folder / "tiny-cn-xl")
    _tiny_controlnet(sdxl.pipe.unet, 2).save_pretrained(folder / "tiny-cn-xl-b")
    _tiny_controlnet(sd15.pipe.unet, 3).save_pretrained(folder / "tiny-cn-sd15")
    torch.manual_seed(4)  # full adapter: first feature latent-sized (downscale = VAE scale 2)
    T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=2,
               adapter_type="full_adapter").save_pretrained(folder / "tiny-t2i-sd15")
    torch.manual_seed(5)  # SDXL adapter: first feature after the first stride-2 block (downscale 2 x 2)
    xl_adapter = T2IAdapter(in_channels=3, channels=[32, 64], num_res_blocks=1, downscale_factor=4,
                            adapter_type="full_adapter_xl")
    xl_adapter.save_pretrained(folder / "tiny-t2i-xl")
    save_file({key: value.contiguous() for key, value in xl_adapter.state_dict().items()},
              str(folder / "tiny-t2i-xl-single.safetensors"))
    ip_folder = folder / "tiny-ip"
    torch.manual_seed(6)
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=24)).save_pretrained(ip_folder / "image_encoder")
    save_file(_tiny_ip_adapter(sd15.pipe.unet, 24, 7), str(ip_folder / "tiny-ip-sd15.safetensors"))
    save_file(_tiny_ip_adapter(sdxl.pipe.unet, 24, 8), str(ip_folder / "tiny-ip-xl.safetensors"))
    return folder


@pytest.fixture(scope="module")
def service(controlnet_dir: Path) -> ControlNetService:
    return ControlNetService(controlnet_dir)


BASE = {"prompt": "a red circle", "negative_prompt": "", "steps": 3, "width": 32, "height": 32, "seed": 11,
        "cfg_scale": 4.0, "sampler_name": "Euler"}


def _generate(model: Any, service: ControlNetService | None, units: list[dict] | None,
              params_cls: type = Txt2ImgParams, **fields: object) -> tuple[np.ndarray, str]:
    alwayson = {"ControlNet": {"args": units}} if units is not None else {}
    params = params_cls(**{**BASE, **fields}, alwayson_scripts=alwayson)
    run = ProcessingRun(params, Options())
    if isinstance(params, Img2ImgParams):
        run.init_images = [control_sketch(32, margin=6, stroke=4)]
    if service is not None:
        service.customize(run, params)
    processor = Processor(samplers=build_default_registry(), model_provider=lambda r: model,
                          finalizers=[ControlNetService.finalize])
    result = processor.process(run)
    return np.asarray(result.images[0], dtype=np.int16), result.infotexts[0]


def _unit(model: str, **fields: object) -> dict:
    image = png_b64(control_sketch(margin=6, stroke=4))
    return {"enabled": True, "module": "invert", "model": model, "weight": 1.0, "image": image, "processor_res": 64,
            **fields}


@pytest.fixture(scope="module")
def plain_sdxl(sdxl: Any) -> np.ndarray:
    return _generate(sdxl, None, None)[0]


@pytest.fixture(scope="module")
def plain_sd15(sd15: Any) -> np.ndarray:
    return _generate(sd15, None, None)[0]


# -- listing -------------------------------------------------------------------------------------------------------
def test_model_list_lists_controlnets_and_both_adapter_kinds(service: ControlNetService) -> None:
    from types import SimpleNamespace

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from modules.api.controlnet import build_router

    app = FastAPI()
    app.include_router(build_router(SimpleNamespace(controlnet=service)))
    names = TestClient(app).get("/controlnet/model_list").json()["model_list"]
    assert names == ["tiny-cn-sd15", "tiny-cn-xl", "tiny-cn-xl-b", "tiny-ip-sd15", "tiny-ip-xl", "tiny-t2i-sd15",
                     "tiny-t2i-xl", "tiny-t2i-xl-single"]  # the IP-Adapters' image encoder is not a model
    kinds = {name: service.catalog.find(name).kind for name in names}
    assert kinds["tiny-t2i-xl-single"] == kinds["tiny-t2i-sd15"] == "t2i_adapter"
    assert kinds["tiny-ip-xl"] == "ip_adapter" and kinds["tiny-cn-xl"] == "controlnet"


# -- SDXL ControlNet -----------------------------------------------------------------------------------------------
def test_sdxl_controlnet_changes_output_and_weight_zero_is_plain(sdxl: Any, service: ControlNetService,
                                                                 plain_sdxl: np.ndarray) -> None:
    controlled, info = _generate(sdxl, service, [_unit("tiny-cn-xl")])
    assert np.abs(controlled - plain_sdxl).mean() > 2.0
    assert 'ControlNet 0: "Module: invert, Model: tiny-cn-xl, Weight: 1' in info
    zero, _ = _generate(sdxl, service, [_unit("tiny-cn-xl", weight=0.0)])
    assert np.array_equal(zero, plain_sdxl)
    never, _ = _generate(sdxl, service, [_unit("tiny-cn-xl", guidance_start=0.99)])  # after the last step
    assert np.array_equal(never, plain_sdxl)


def test_sdxl_multi_controlnet_and_img2img(sdxl: Any, service: ControlNetService) -> None:
    one, _ = _generate(sdxl, service, [_unit("tiny-cn-xl")])
    two, info = _generate(sdxl, service, [_unit("tiny-cn-xl"), _unit("tiny-cn-xl-b", module="canny")])
    assert np.abs(one - two).mean() > 1.0 and "ControlNet 1:" in info
    plain_i2i, _ = _generate(sdxl, None, None, Img2ImgParams, denoising_strength=0.8)
    controlled, _ = _generate(sdxl, service, [_unit("tiny-cn-xl", image=None)], Img2ImgParams,
                              denoising_strength=0.8)
    assert np.abs(controlled - plain_i2i).mean() > 1.0


@pytest.mark.parametrize(("model_fixture", "control_model", "family"), [
    ("sdxl", "tiny-cn-sd15", "SDXL-type"),
    ("sd15", "tiny-cn-xl", "SD1.x/2.x-type"),
    ("sdxl", "tiny-t2i-sd15", "SDXL-type"),
    ("sd15", "tiny-t2i-xl", "SD1.x/2.x-type"),
    ("sd15", "tiny-ip-xl", "SD1.x/2.x-type"),
])
def test_control_model_of_another_family_is_refused_naming_the_field(
        model_fixture: str, control_model: str, family: str, service: ControlNetService,
        request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_fixture)
    with pytest.raises(UserInputError) as info:
        _generate(model, service, [_unit("tiny-cn-xl", weight=0.0), _unit(control_model)])
    assert info.value.status_code == 422
    assert info.value.field == f"{FIELD}[1].model"
    assert control_model in info.value.reason and family in info.value.reason


def test_refused_job_leaves_the_model_untouched(sd15: Any, service: ControlNetService,
                                                plain_sd15: np.ndarray) -> None:
    with pytest.raises(UserInputError):
        _generate(sd15, service, [_unit("tiny-ip-xl")])
    assert np.array_equal(_generate(sd15, None, None)[0], plain_sd15)


# -- T2I-Adapter ---------------------------------------------------------------------------------------------------
def test_t2i_adapter_changes_output_weight_zero_and_late_start_are_plain(sd15: Any, service: ControlNetService,
                                                                       plain_sd15: np.ndarray) -> None:
    adapted, info = _generate(sd15, service, [_unit("tiny-t2i-sd15")])
    assert np.abs(adapted - plain_sd15).mean() > 2.0
    assert "Model: tiny-t2i-sd15" in info
    zero, _ = _generate(sd15, service, [_unit("tiny-t2i-sd15", weight=0.0)])
    assert np.array_equal(zero, plain_sd15)
    never, _ = _generate(sd15, service, [_unit("tiny-t2i-sd15", guidance_start=0.99)])  # after the last step
    assert np.array_equal(never, plain_sd15)
    first_step, _ = _generate(sd15, service, [_unit("tiny-t2i-sd15", guidance_end=0.3)])
    assert not np.array_equal(first_step, plain_sd15) and not np.array_equal(first_step, adapted)


def test_sdxl_t2i_adapter_from_folder_and_single_file(sdxl: Any, service: ControlNetService,
                                                      plain_sdxl: np.ndarray) -> None:
    folder, _ = _generate(sdxl, service, [_unit("tiny-t2i-xl")])
    assert np.abs(folder - plain_sdxl).mean() > 2.0
    single, _ = _generate(sdxl, service, [_unit("tiny-t2i-xl-single")])
    assert np.array_equal(single, folder)  # the single file's config (full_adapter_xl) follows the SDXL UNet
    with_controlnet, _ = _generate(sdxl, service, [_unit("tiny-t2i-xl"), _unit("tiny-cn-xl")])
    assert np.abs(with_controlnet - folder).mean() > 1.0


# -- IP-Adapter ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("model_fixture", "adapter"), [("sd15", "tiny-ip-sd15"), ("sdxl", "tiny-ip-xl")])
def test_ip_adapter_changes_output_and_is_gone_after_the_job(model_fixture: str, adapter: str,
                                                             service: ControlNetService,
                                                             request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(model_fixture)
    plain = request.getfixturevalue(f"plain_{model_fixture}")
    unet = model.pipe.unet
    processors = dict(unet.attn_processors)
    prompted, info = _generate(model, service, [_unit(adapter, module="ip-adapter_clip_sd15")])
    assert np.abs(prompted - plain).mean() > 2.0 and f"Model: {adapter}" in info
    assert all(unet.attn_processors[name] is processor for name, processor in processors.items())
    assert unet.encoder_hid_proj is None and unet.config.encoder_hid_dim_type is None
    assert getattr(model.pipe, "image_encoder", None) is None
    assert np.array_equal(_generate(model, None, None)[0], plain)  # the next job: bit-identical to before
    zero, _ = _generate(model, service, [_unit(adapter, weight=0.0)])
    assert np.array_equal(zero, plain)


def test_adapters_follow_a_hires_second_pass(sd15: Any, service: ControlNetService) -> None:
    hires = {"enable_hr": True, "hr_scale": 1.5, "hr_upscaler": "Latent", "denoising_strength": 0.6,
             "hr_second_pass_steps": 2}
    plain, _ = _generate(sd15, None, None, **hires)
    both, _ = _generate(sd15, service, [_unit("tiny-t2i-sd15"), _unit("tiny-ip-sd15", module="none")], **hires)
    assert both.shape == plain.shape == (48, 48, 3)  # latent 24 x 24 at the second pass: the adapter map follows
    assert np.abs(both - plain).mean() > 2.0
    assert sd15.pipe.unet.encoder_hid_proj is None
