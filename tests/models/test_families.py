"""Model families: header/folder recognition, offline loading from folders and LDM single files, generation."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from modules.models.families import (
    FAMILIES,
    FamilyError,
    ModelFamily,
    PickleRefusedError,
    detect,
    read_header,
    register,
)
from tests.tiny_pipelines import pipeline_to_ldm, save_tiny_checkpoints

ALL_FAMILIES = ("sd15", "sd15-inpaint", "sd2", "sd2-v", "sdxl", "sdxl-inpaint", "sdxl-refiner", "playground-v2.5")


@pytest.fixture(autouse=True)
def _hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE at import; pin its constant too so any hub call fails loudly."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def generate(pipe: object, family: ModelFamily) -> np.ndarray:
    """Two denoising steps at 32x32 with a fixed seed; inpaint and refiner get the image inputs they need."""
    kwargs: dict[str, object] = {
        "num_inference_steps": 2,
        "generator": torch.Generator().manual_seed(0),
        "output_type": "np",
    }
    picture = Image.new("RGB", (32, 32), (200, 30, 30))
    if family.is_inpaint:
        kwargs.update(image=picture, mask_image=Image.new("L", (32, 32), 255), height=32, width=32)
    elif family.name == "sdxl-refiner":
        kwargs.update(image=picture, strength=0.9)
    else:
        kwargs.update(height=32, width=32)
    images = pipe("a red circle on a blue background", **kwargs).images  # type: ignore[operator]
    return np.asarray(images)


def test_registry_holds_every_family_with_its_settings() -> None:
    assert set(ALL_FAMILIES) <= set(FAMILIES)
    assert FAMILIES["sd15"].default_size == (512, 512)
    assert FAMILIES["sd2-v"].default_size == (768, 768) and FAMILIES["sd2-v"].prediction_type == "v_prediction"
    assert FAMILIES["sdxl"].default_size == (1024, 1024)
    assert FAMILIES["playground-v2.5"].default_size == (1024, 1024)
    assert [name for name in ALL_FAMILIES if FAMILIES[name].is_inpaint] == ["sd15-inpaint", "sdxl-inpaint"]
    edm = FAMILIES["playground-v2.5"].default_scheduler_config()
    assert edm["_class_name"] == "EDMDPMSolverMultistepScheduler" and edm["sigma_data"] == 0.5
    assert FAMILIES["sd2-v"].default_scheduler_config()["prediction_type"] == "v_prediction"
    assert [name for name in ALL_FAMILIES if FAMILIES[name].uses_edm] == ["playground-v2.5"]


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register(FAMILIES["sd15"])


@pytest.mark.parametrize("family_name", ALL_FAMILIES)
def test_tiny_family_loads_and_generates_from_folder_and_single_file(family_name: str, tmp_path: Path) -> None:
    family = FAMILIES[family_name]
    paths = save_tiny_checkpoints(family, tmp_path)

    assert detect(paths["folder"]) is family
    assert detect(paths["single"]) is family  # from the safetensors header alone
    assert family.default_size_for(paths["folder"]) == (32, 32)  # a folder reports its own trained size
    assert family.default_size_for(paths["single"]) == family.default_size

    from_folder = family.load(paths["folder"], torch_dtype=torch.float32)
    assert type(from_folder).__name__ == family.pipeline_class_name
    folder_image = generate(from_folder, family)
    del from_folder
    from_single = family.load(paths["single"], torch_dtype=torch.float32, config_dir=paths["config"])
    assert type(from_single).__name__ == family.pipeline_class_name
    assert type(from_single.scheduler).__name__ == family.default_scheduler_class_name(paths["config"])
    single_image = generate(from_single, family)

    assert folder_image.shape == (1, 32, 32, 3)
    assert np.isfinite(folder_image).all() and folder_image.std() > 0.01
    # The LDM round trip is lossless: same weights, same seed, same pixels.
    np.testing.assert_allclose(single_image, folder_image, atol=1e-5)


def test_lead_tiny_sd_folder_is_sd15(tiny_sd_path: Path) -> None:
    family = detect(tiny_sd_path)
    assert family.name == "sd15"
    unet = json.loads((tiny_sd_path / "unet" / "config.json").read_text())
    assert family.default_size_for(tiny_sd_path) == (unet["sample_size"] * 2,) * 2


def _write_header_only(path: Path, shapes: dict[str, tuple[int, ...]], metadata: dict[str, str] | None = None) -> Path:
    """A safetensors header describing tensors whose bytes are absent: detection must not need them."""
    header: dict[str, object] = {
        key: {"dtype": "F16", "shape": list(shape), "data_offsets": [0, 0]} for key, shape in shapes.items()
    }
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)
    return path


def _real_ldm_shapes(family: ModelFamily) -> dict[str, tuple[int, ...]]:
    """Key names and shapes of a full-size checkpoint of `family`, built on the meta device from configs/."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = family.config_dir

    class _Pipe:
        pass

    pipe = _Pipe()
    with torch.device("meta"):
        pipe.unet = UNet2DConditionModel.from_config(json.loads((config / "unet" / "config.json").read_text()))
        pipe.vae = AutoencoderKL.from_config(json.loads((config / "vae" / "config.json").read_text()))
        pipe.text_encoder = None
        pipe.text_encoder_2 = None
        if (config / "text_encoder").is_dir():
            pipe.text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(str(config / "text_encoder")))
        if (config / "text_encoder_2").is_dir():
            pipe.text_encoder_2 = CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(str(config / "text_encoder_2"))
            )
    return {key: tuple(value.shape) for key, value in pipeline_to_ldm(pipe, family).items()}


@pytest.mark.parametrize("family_name", ALL_FAMILIES)
def test_full_size_header_is_recognised_and_agrees_with_diffusers(family_name: str, tmp_path: Path) -> None:
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    family = FAMILIES[family_name]
    shapes = _real_ldm_shapes(family)
    path = _write_header_only(tmp_path / f"{family_name}.safetensors", shapes)
    assert detect(path) is family
    # diffusers' own classifier, fed the same key set, must see the same architecture.
    with torch.device("meta"):
        checkpoint = {key: torch.empty(shape) for key, shape in shapes.items()}
    expected = {
        "sd15": "v1",
        "sd15-inpaint": "inpainting",
        "sd2": "v2",
        "sd2-v": "v2",
        "sdxl": "xl_base",
        "sdxl-inpaint": "xl_inpaint",
        "sdxl-refiner": "xl_refiner",
        "playground-v2.5": "playground-v2-5",
    }
    assert infer_diffusers_model_type(checkpoint) == expected[family_name]


def test_sd2_prediction_type_comes_from_markers(tmp_path: Path) -> None:
    shapes = _real_ldm_shapes(FAMILIES["sd2"])
    assert detect(_write_header_only(tmp_path / "plain.safetensors", shapes)).name == "sd2"
    tagged = _write_header_only(tmp_path / "tagged.safetensors", shapes, {"modelspec.prediction_type": "v"})
    assert detect(tagged).name == "sd2-v"
    keyed = _write_header_only(tmp_path / "keyed.safetensors", {**shapes, "v_pred": (0,)})
    assert detect(keyed).name == "sd2-v"


def test_read_header_reads_only_the_header(tmp_path: Path) -> None:
    path = _write_header_only(tmp_path / "x.safetensors", {"a.weight": (3, 4)}, {"format": "pt"})
    header = read_header(path)
    assert header.shape("a.weight") == (3, 4) and header.tensors["a.weight"].dtype == "F16"
    assert header.metadata == {"format": "pt"} and "a.weight" in header and header.shape("missing") is None


@pytest.mark.parametrize(
    "content", [b"", b"\x00" * 4, struct.pack("<Q", 10**12) + b"{}", struct.pack("<Q", 5) + b"nope!"]
)
def test_garbage_files_raise_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(FamilyError, match="broken.safetensors"):
        detect(path)


def test_unknown_checkpoint_and_folder_name_the_path(tmp_path: Path) -> None:
    path = _write_header_only(tmp_path / "lora.safetensors", {"lora_unet_down.alpha": (1,)})
    with pytest.raises(FamilyError, match="lora.safetensors.*no known model family"):
        detect(path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FamilyError, match="empty"):
        detect(tmp_path / "empty")
    with pytest.raises(FamilyError, match="missing.safetensors"):
        detect(tmp_path / "missing.safetensors")


def test_pickle_checkpoints_need_explicit_permission(tmp_path: Path) -> None:
    from tests.tiny_pipelines import build_tiny_pipeline

    family = FAMILIES["sd15"]
    paths = save_tiny_checkpoints(family, tmp_path)
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": pipeline_to_ldm(build_tiny_pipeline(family), family)}, path)
    for call in (lambda: detect(path), lambda: family.load(path, torch_dtype=torch.float32)):
        with pytest.raises(PickleRefusedError, match="--allow-pickle"):
            call()
    assert detect(path, allow_pickle=True) is family
    assert read_header(path, allow_pickle=True).format == "pickle"
    pipe = family.load(path, torch_dtype=torch.float32, allow_pickle=True, config_dir=paths["config"])
    assert type(pipe).__name__ == "StableDiffusionPipeline"


@pytest.mark.parametrize("family_name", ALL_FAMILIES)
def test_shipped_config_dir_is_complete_for_its_pipeline(family_name: str) -> None:
    """Every component the pipeline needs is named in configs/<family>; the scheduler builds from it offline."""
    import diffusers

    family = FAMILIES[family_name]
    index = json.loads((family.config_dir / "model_index.json").read_text())
    assert index["_class_name"] == family.pipeline_class_name
    scheduler_cls = getattr(diffusers, family.default_scheduler_class_name())
    scheduler = scheduler_cls.from_pretrained(str(family.config_dir), subfolder="scheduler", local_files_only=True)
    assert scheduler.config.get("prediction_type", "epsilon") == family.prediction_type
    unet = json.loads((family.config_dir / "unet" / "config.json").read_text())
    assert unet["in_channels"] == (9 if family.is_inpaint else 4)
    vae = json.loads((family.config_dir / "vae" / "config.json").read_text())
    assert unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1) == family.default_size[0]
    for name, entry in index.items():
        if isinstance(entry, list) and entry[0] is not None and not name.startswith("tokenizer"):
            assert (family.config_dir / name).is_dir(), f"{family_name}: configs lack {name}/"


# Published parameter counts (millions) of the real architectures whose configs ship in configs/.
PUBLISHED = {
    "sd15": {"unet": 859.52, "vae": 83.65, "text_encoder": 123.06},
    "sdxl": {"unet": 2567.46, "vae": 83.65, "text_encoder": 123.06, "text_encoder_2": 694.66},
    "playground-v2.5": {"unet": 2567.46, "vae": 83.65, "text_encoder": 123.06, "text_encoder_2": 694.66},
    "sd2-v": {"unet": 865.91, "vae": 83.65},
    "sdxl-refiner": {"unet": 2259.53, "vae": 83.65, "text_encoder_2": 694.66},
}


@pytest.mark.parametrize("family_name", sorted(PUBLISHED))
def test_shipped_configs_have_published_parameter_counts(family_name: str) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = FAMILIES[family_name].config_dir
    builders = {
        "unet": lambda d: UNet2DConditionModel.from_config(json.loads((d / "config.json").read_text())),
        "vae": lambda d: AutoencoderKL.from_config(json.loads((d / "config.json").read_text())),
        "text_encoder": lambda d: CLIPTextModel(CLIPTextConfig.from_pretrained(str(d))),
        "text_encoder_2": lambda d: CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(str(d))),
    }
    for component, millions in PUBLISHED[family_name].items():
        with torch.device("meta"):
            model = builders[component](config / component)
        count = sum(parameter.numel() for parameter in model.parameters()) / 1e6
        assert count == pytest.approx(millions, rel=0.005), (family_name, component, count)


def test_shipped_tokenizer_matches_clip_ids() -> None:
    tokenizer = FAMILIES["sd15"].load_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    openclip = FAMILIES["sdxl"].load_tokenizer("tokenizer_2")
    assert openclip.pad_token == "!" and openclip.pad_token_id == 0
