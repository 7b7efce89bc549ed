"""The VAE's half-precision overflow rule (A1111's "Automatically revert VAE to 32-bit floats"): NaNs from a
half-precision decode are retried in fp32, and the VAE stays in fp32 so later images skip the failed try."""

from __future__ import annotations

import diffusers
import numpy as np
import torch
from diffusers.image_processor import VaeImageProcessor

from modules.processing.engine import decode_latents as engine_decode


def decode_latents(vae: diffusers.AutoencoderKL, processor: VaeImageProcessor, latents: torch.Tensor) -> list:
    with torch.no_grad():  # as the processor calls it
        return engine_decode(vae, processor, latents)


def _largest_difference(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def _overflowing_vae() -> diffusers.AutoencoderKL:
    """A tiny VAE whose decoder's first convolution is scaled past fp16's range (65504): fine in fp32, inf (then
    NaN through the group norm) in fp16, as SDXL's real VAE overflows in fp16."""
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=32)
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(2e5)
    return vae.eval()


def test_a_vae_that_overflows_in_half_precision_is_retried_in_fp32_and_stays_there() -> None:
    vae = _overflowing_vae()
    processor = VaeImageProcessor(vae_scale_factor=2)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    reference = np.asarray(decode_latents(vae, processor, latents)[0])  # fp32 throughout

    vae.to(torch.float16)
    with torch.no_grad():
        half = vae.decode(latents.half() / vae.config.scaling_factor, return_dict=False)[0]
    assert torch.isnan(half).any(), "the fixture must overflow in fp16"
    calls: list[torch.dtype] = []
    decode = vae.decode

    def counting(sample: torch.Tensor, *args: object, **kwargs: object) -> object:
        calls.append(sample.dtype)
        return decode(sample, *args, **kwargs)

    vae.decode = counting  # type: ignore[method-assign]
    first = np.asarray(decode_latents(vae, processor, latents.half())[0])
    assert calls == [torch.float16, torch.float32] and vae.dtype == torch.float32
    assert _largest_difference(first, reference) <= 2  # the weights went through fp16 once
    second = np.asarray(decode_latents(vae, processor, latents.half())[0])
    assert calls[2:] == [torch.float32], "the second image goes straight to fp32"
    assert np.array_equal(second, first)
    # the widened weights stay ordinary tensors that a later VAE swap or LoRA merge may update in place
    assert not any(parameter.is_inference() for parameter in vae.parameters())
    vae.load_state_dict(vae.state_dict())


def test_a_vae_that_works_in_half_precision_stays_there() -> None:
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), sample_size=32).eval().to(torch.float16)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)).half()
    image = decode_latents(vae, VaeImageProcessor(vae_scale_factor=2), latents)[0]
    assert vae.dtype == torch.float16 and image.size == (16, 16)
