"""Shared fixtures: tiny *real* diffusers components (random weights, seconds on a CPU), never pipeline mocks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_OFFLINE", "1")

TINY_WORDS = ("a", "an", "the", "on", "of", "and", "red", "green", "blue", "yellow", "orange", "purple", "white",
              "black", "circle", "square", "triangle", "background", "cat", "dog", "photo", "big", "small")


def build_tiny_sd(folder: Path, *, seed: int = 0, scheduler: str = "EulerDiscreteScheduler",
                  in_channels: int = 4) -> Path:
    """Save a tiny SD-1.x-layout pipeline (CLIP text encoder, UNet, VAE, scheduler) as a diffusers folder."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tools.embedded.tokenizer import write_tokenizer

    torch.manual_seed(seed)
    tokenizer_dir = write_tokenizer(folder / "_tokenizer_build", TINY_WORDS)
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=3, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=32))
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=in_channels, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=32)
    scheduler_obj = getattr(diffusers, scheduler)(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                  num_train_timesteps=1000)
    pipe = diffusers.StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler_obj,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    import shutil

    shutil.rmtree(tokenizer_dir, ignore_errors=True)
    return folder


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir whose Stable-diffusion folder holds one tiny diffusers model, ``tiny-sd``."""
    root = tmp_path_factory.mktemp("models")
    build_tiny_sd(root / "Stable-diffusion" / "tiny-sd")
    for sub in ("VAE", "Lora", "embeddings", "ESRGAN", "ControlNet"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def tiny_sd_path(tiny_models_dir: Path) -> Path:
    return tiny_models_dir / "Stable-diffusion" / "tiny-sd"


@pytest.fixture(scope="module")
def loaded(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny model loaded through Easel's catalog and manager (CPU, fp32), fresh for each test module."""
    from modules.devices import select_device
    from modules.models.catalog import CheckpointCatalog, HashCache
    from modules.models.manager import ModelManager

    catalog = CheckpointCatalog(tiny_models_dir / "Stable-diffusion",
                                HashCache(tmp_path_factory.mktemp("hashes") / "hashes.json"))
    catalog.refresh()
    device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
    return ModelManager(catalog, device).ensure_loaded("tiny-sd")


def tiny_txt2img(model: Any, preprocessors: list[Any] | None = None, **fields: object) -> Any:
    """One 64x64 Easel txt2img (Euler, 3 steps, CFG 7, seed 7) as a uint8 array of shape (batch, h, w, 3)."""
    import numpy as np

    from modules.core.settings import Options
    from modules.processing.params import Txt2ImgParams
    from modules.processing.processor import Processor
    from modules.processing.run import ProcessingRun
    from modules.processing.samplers import build_default_registry

    params = {"prompt": "a red circle", "negative_prompt": "blue", "steps": 3, "cfg_scale": 7.0, "width": 64,
              "height": 64, "seed": 7, "sampler_name": "Euler", **fields}
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model,
                          prompt_preprocessors=list(preprocessors or []))
    result = processor.process(ProcessingRun(Txt2ImgParams(**params), Options()))
    return np.stack([np.asarray(image) for image in result.images])


@pytest.fixture(scope="session")
def generate() -> Any:
    return tiny_txt2img
