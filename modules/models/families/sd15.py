"""Stable Diffusion 1.x (v1.4, v1.5 and their fine-tunes) and its 9-channel inpainting variant.

SD 1.x is recognised by its OpenAI CLIP text encoder without SDXL's `label_emb`; in a diffusers folder by a
single text encoder whose activation is quick_gelu (OpenCLIP-based SD 2.x uses gelu).
"""

from __future__ import annotations

from typing import ClassVar

from modules.models.families.base import CheckpointHeader, FolderConfigs, ModelFamily
from modules.models.families.signatures import SD1_TEXT, has_unet, is_sdxl_unet, unet_in_channels


def is_sd1_header(header: CheckpointHeader) -> bool:
    return has_unet(header) and not is_sdxl_unet(header) and header.has_prefix(SD1_TEXT)


def is_sd1_folder(configs: FolderConfigs) -> bool:
    if configs.unet.get("addition_embed_type") is not None or configs.has_component("text_encoder_2"):
        return False
    if not configs.has_component("text_encoder"):
        return False
    return configs.text_encoder.get("hidden_act", "quick_gelu") != "gelu"


class SD15(ModelFamily):
    name = "sd15"
    label = "Stable Diffusion 1.x"
    default_size = (512, 512)
    prediction_type = "epsilon"
    config_name = "sd15"
    pipeline_class_name = "StableDiffusionPipeline"
    expected_in_channels: ClassVar[int] = 4

    def match_header(self, header: CheckpointHeader) -> bool:
        return is_sd1_header(header) and unet_in_channels(header) == self.expected_in_channels

    def match_configs(self, configs: FolderConfigs) -> bool:
        return is_sd1_folder(configs) and configs.unet.get("in_channels", 4) == self.expected_in_channels


class SD15Inpaint(SD15):
    """Latent (4) + mask (1) + masked-image latent (4) = 9 UNet input channels."""

    name = "sd15-inpaint"
    label = "Stable Diffusion 1.x inpainting"
    is_inpaint = True
    priority = 10
    config_name = "sd15-inpaint"
    pipeline_class_name = "StableDiffusionInpaintPipeline"
    expected_in_channels = 9
