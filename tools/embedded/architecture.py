"""Component configurations of the embedded model: standard diffusers/transformers classes, tiny sizes.

The model is deliberately the same architecture as a Stable Diffusion 1.x/2.x checkpoint (CLIP text encoder,
KL autoencoder with 4 latent channels, cross-attention UNet) so that it travels Easel's normal code paths. It is
v-prediction on a zero-terminal-SNR schedule like SD 2.x-v models: that is what lets sampling control the overall
colour of the picture (the colour of the background) from the prompt alone.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, DDPMScheduler, EulerDiscreteScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from tools.embedded.shapes import IMAGE_SIZE
from tools.embedded.tokenizer import MODEL_MAX_LENGTH

TEXT_HIDDEN = 64
LATENT_CHANNELS = 4
VAE_DOWNSCALE = 4
LATENT_SIZE = IMAGE_SIZE // VAE_DOWNSCALE

# Shared by training (DDPM) and the shipped inference scheduler; samplers swapped in with
# `Cls.from_config(pipe.scheduler.config)` keep these.
NOISE_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "clip_sample": False,
}


def text_encoder_config(vocab_size: int, bos_token_id: int, eos_token_id: int) -> CLIPTextConfig:
    """Small CLIP text transformer; three layers are enough to bind a colour word to the noun after it."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_HIDDEN,
        intermediate_size=TEXT_HIDDEN * 4,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MODEL_MAX_LENGTH,
        projection_dim=TEXT_HIDDEN,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
    )


def build_text_encoder(vocab_size: int, bos_token_id: int, eos_token_id: int) -> CLIPTextModel:
    return CLIPTextModel(text_encoder_config(vocab_size, bos_token_id, eos_token_id))


def build_vae() -> AutoencoderKL:
    """64x64x3 <-> 16x16x4: three encoder blocks, two of them downsampling; flat colours need few channels."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
    )


def build_unet(full_resolution_attention: bool = True) -> UNet2DConditionModel:
    """Cross-attention UNet over 16x16 latents, channels 32/64/96; about 2.8 M parameters.

    The shipped layout has a transformer at every level, as SD 1.x has at its three finest ones. Without the one
    at 16x16 (``full_resolution_attention=False``, the layout of the first 9,200 training steps: a training step
    costs 30% less on this CPU) the prompt reaches only the 8x8 and 4x4 features, where a small square and a
    small circle are the same blob, and the model drew small squares with round corners.
    """
    first_down = "CrossAttnDownBlock2D" if full_resolution_attention else "DownBlock2D"
    last_up = "CrossAttnUpBlock2D" if full_resolution_attention else "UpBlock2D"
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=(first_down, "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", last_up),
        block_out_channels=(32, 64, 96),
        layers_per_block=1,
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=4,
        norm_num_groups=16,
    )


def grow_full_resolution_attention(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """The same function as ``unet`` (a layout without 16x16 attention) in the layout with it.

    The new transformers' output projections start at zero, so each adds nothing to its residual stream until
    training moves them: the grown model's predictions equal the old ones exactly, and training continues from
    where it was instead of from scratch.
    """
    grown = build_unet(full_resolution_attention=True)
    missing, unexpected = grown.load_state_dict(unet.state_dict(), strict=False)
    new_blocks = ("down_blocks.0.attentions.", "up_blocks.2.attentions.")
    if unexpected or not missing or any(not key.startswith(new_blocks) for key in missing):
        raise ValueError(f"not a UNet without 16x16 attention: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for block in (grown.down_blocks[0], grown.up_blocks[2]):
        for transformer in block.attentions:
            torch.nn.init.zeros_(transformer.proj_out.weight)
            torch.nn.init.zeros_(transformer.proj_out.bias)
    return grown


def build_training_scheduler() -> DDPMScheduler:
    return DDPMScheduler(**NOISE_SCHEDULE)


def build_inference_scheduler() -> EulerDiscreteScheduler:
    """The shipped default sampler (Euler); its config carries v-prediction, zero SNR and trailing spacing."""
    # from_config keeps keys Euler does not use (clip_sample=False) in the saved config, so that a DDIM scheduler
    # made from it does not clip the predicted latents to [-1, 1]. steps_offset is unused by trailing spacing;
    # 1 keeps diffusers' deprecation check quiet for every sampler.
    return EulerDiscreteScheduler.from_config({**NOISE_SCHEDULE, "steps_offset": 1, "set_alpha_to_one": True})
