"""Random-weight tiny pipelines in each family's layout, for tests and smoke checks.

Each builder mirrors its family's real structure (block types, text encoders, conditioning, in-channels,
scheduler) at toy width so that a checkpoint loads and generates in well under a second on a CPU. The shared
CLIP tokenizer from configs/ is used so prompts tokenize exactly as in production.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from modules.models.families.base import ModelFamily
from modules.models.families.signatures import (
    PLAYGROUND_MARKERS,
    REFINER_TEXT_G,
    SD1_TEXT,
    SD2_TEXT,
    SDXL_TEXT_G,
    SDXL_TEXT_L,
    UNET,
    V_PREDICTION_MARKER,
)
from tools.ldm_convert import clip_to_ldm, open_clip_to_ldm, prefixed, unet_to_ldm, vae_to_ldm

VOCAB = 49408
# OpenAI CLIP pads with <|endoftext|>; both specials sit at the end of the shared vocabulary.
BOS, EOS = 49406, 49407
TINY_SAMPLE = 16  # latent side; with a 2-level VAE (scale 2) the tiny models draw 32x32 images
TIME_DIM = 8  # addition_time_embed_dim of the tiny SDXL UNets


def _text_config(hidden: int, *, openclip: bool, projection: int = 32) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=EOS,
        hidden_act="gelu" if openclip else "quick_gelu",
        projection_dim=projection,
    )


def _vae(**extra: Any) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(32, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=TINY_SAMPLE * 2,
        **extra,
    )


def _sd_unet(in_channels: int, cross: int, *, linear: bool) -> Any:
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=TINY_SAMPLE,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross,
        attention_head_dim=(4, 8),
        use_linear_projection=linear,
        norm_num_groups=32,
    )


def _xl_unet(in_channels: int, cross: int, pooled: int, time_ids: int, *, refiner: bool = False) -> Any:
    from diffusers import UNet2DConditionModel

    if refiner:  # four levels, attention only in the middle two, as in the published refiner
        blocks: dict[str, Any] = {
            "block_out_channels": (32, 32, 64, 64),
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            "attention_head_dim": (4, 4, 8, 8),
        }
    else:  # no attention at the first level, as in SDXL base
        blocks = {
            "block_out_channels": (32, 64),
            "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
            "attention_head_dim": (4, 8),
        }
    return UNet2DConditionModel(
        sample_size=TINY_SAMPLE,
        in_channels=in_channels,
        out_channels=4,
        layers_per_block=2,
        cross_attention_dim=cross,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_DIM,
        projection_class_embeddings_input_dim=pooled + time_ids * TIME_DIM,
        transformer_layers_per_block=1,
        norm_num_groups=32,
        **blocks,
    )


def _tokenizer(family: ModelFamily, subfolder: str = "tokenizer") -> Any:
    return family.load_tokenizer(subfolder)


def _sd_pipeline(family: ModelFamily, *, openclip: bool, in_channels: int, prediction: str) -> Any:
    from diffusers import DDIMScheduler
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    text = CLIPTextModel(_text_config(32, openclip=openclip))
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        prediction_type=prediction,
        steps_offset=1,
    )
    components = {
        "unet": _sd_unet(in_channels, 32, linear=openclip),
        "vae": _vae(),
        "text_encoder": text,
        "tokenizer": _tokenizer(family),
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }
    return family.pipeline_class()(**components)


def _xl_pipeline(family: ModelFamily, *, in_channels: int, edm: bool = False, refiner: bool = False) -> Any:
    from diffusers import EDMDPMSolverMultistepScheduler, EulerDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    # The two encoders must differ in width: diffusers tells the embedders apart by hidden size.
    text_2 = CLIPTextModelWithProjection(_text_config(64, openclip=True, projection=32))
    if edm:
        scheduler: Any = EDMDPMSolverMultistepScheduler(sigma_data=0.5, sigma_min=0.002, sigma_max=80.0)
        vae = _vae(latents_mean=[0.0] * 4, latents_std=[1.0] * 4, scaling_factor=0.5)
    else:
        scheduler = EulerDiscreteScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        )
        vae = _vae(scaling_factor=0.13025)
    if refiner:
        components: dict[str, Any] = {
            "unet": _xl_unet(in_channels, 64, 32, 5, refiner=True),
            "text_encoder": None,
            "tokenizer": None,
            "requires_aesthetics_score": True,
            "force_zeros_for_empty_prompt": False,
        }
    else:
        components = {
            "unet": _xl_unet(in_channels, 32 + 64, 32, 6),
            "text_encoder": CLIPTextModel(_text_config(32, openclip=False)),
            "tokenizer": _tokenizer(family),
        }
    components.update(
        vae=vae, text_encoder_2=text_2, tokenizer_2=_tokenizer(family, "tokenizer_2"), scheduler=scheduler
    )
    return family.pipeline_class()(**components)


TINY_BUILDERS: dict[str, Callable[[ModelFamily], Any]] = {
    "sd15": lambda f: _sd_pipeline(f, openclip=False, in_channels=4, prediction="epsilon"),
    "sd15-inpaint": lambda f: _sd_pipeline(f, openclip=False, in_channels=9, prediction="epsilon"),
    "sd2": lambda f: _sd_pipeline(f, openclip=True, in_channels=4, prediction="epsilon"),
    "sd2-v": lambda f: _sd_pipeline(f, openclip=True, in_channels=4, prediction="v_prediction"),
    "sdxl": lambda f: _xl_pipeline(f, in_channels=4),
    "sdxl-inpaint": lambda f: _xl_pipeline(f, in_channels=9),
    "sdxl-refiner": lambda f: _xl_pipeline(f, in_channels=4, refiner=True),
    "playground-v2.5": lambda f: _xl_pipeline(f, in_channels=4, edm=True),
}


def build_tiny_pipeline(family: ModelFamily) -> Any:
    """A random-weight pipeline of `family`'s layout (deterministic: seeded)."""
    try:
        builder = TINY_BUILDERS[family.name]
    except KeyError:
        raise ValueError(f"no tiny builder for model family {family.name!r}") from None
    return builder(family)


def pipeline_to_ldm(pipe: Any, family: ModelFamily) -> dict[str, torch.Tensor]:
    """The whole pipeline as one original-layout state dict, with the family's text-encoder prefixes."""
    state = prefixed(UNET, unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    state.update(prefixed("first_stage_model.", vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config)))
    text: Any = getattr(pipe, "text_encoder", None)
    text_2: Any = getattr(pipe, "text_encoder_2", None)
    if text_2 is None:  # SD 1.x / 2.x
        if text.config.hidden_act == "gelu":
            state.update(prefixed(SD2_TEXT, open_clip_to_ldm(text.state_dict())))
        else:
            state.update(prefixed(SD1_TEXT, clip_to_ldm(text.state_dict())))
    elif text is None:  # refiner
        state.update(prefixed(REFINER_TEXT_G, open_clip_to_ldm(text_2.state_dict())))
    else:
        state.update(prefixed(SDXL_TEXT_L, clip_to_ldm(text.state_dict())))
        state.update(prefixed(SDXL_TEXT_G, open_clip_to_ldm(text_2.state_dict())))
    if family.name.startswith("playground"):
        for marker in PLAYGROUND_MARKERS:
            state[marker] = torch.zeros(1, 4, 1, 1)
    if family.prediction_type == "v_prediction":
        state[V_PREDICTION_MARKER] = torch.zeros(0)
    return {key: value.detach().contiguous() for key, value in state.items()}


def save_single_file(pipe: Any, family: ModelFamily, path: Path) -> Path:
    metadata = {"format": "pt"}
    if family.prediction_type == "v_prediction":
        metadata["modelspec.prediction_type"] = "v"
    save_file(pipe_state := pipeline_to_ldm(pipe, family), str(path), metadata=metadata)
    del pipe_state
    return path


def write_config_dir(folder: Path, target: Path) -> Path:
    """Copy only the JSON configs of a diffusers folder: the offline config dir for a single file of that shape."""
    for source in folder.rglob("*.json"):
        if source.parent.name.startswith("tokenizer"):
            continue  # production loads the shared tokenizer from configs/, so tests must too
        destination = target / source.relative_to(folder)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
    return target


def save_tiny_checkpoints(family: ModelFamily, root: Path) -> dict[str, Path]:
    """Write `folder` (diffusers), `single` (.safetensors, LDM layout) and `config` (configs for `single`)."""
    pipe = build_tiny_pipeline(family)
    folder = root / f"{family.name}-folder"
    pipe.save_pretrained(folder, safe_serialization=True)
    single = save_single_file(pipe, family, root / f"{family.name}.safetensors")
    config = write_config_dir(folder, root / f"{family.name}-config")
    return {"folder": folder, "single": single, "config": config}

