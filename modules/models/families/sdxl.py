"""SDXL base 1.0 and its 9-channel inpainting variant.

A single file is SDXL base when its UNet has `label_emb` (pooled text + size/crop conditioning) and it carries
both text encoders: CLIP ViT-L at `conditioner.embedders.0.transformer.` and OpenCLIP bigG at
`conditioner.embedders.1.model.`. Playground v2.5 shares this layout and is told apart by its `edm_mean` key.
"""

from __future__ import annotations

from typing import ClassVar

from modules.models.families.base import CheckpointHeader, FolderConfigs, ModelFamily
from modules.models.families.signatures import (
    PLAYGROUND_MARKERS,
    SDXL_TEXT_G,
    SDXL_TEXT_L,
    is_sdxl_unet,
    unet_in_channels,
)

SDXL_PADS = {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"}


def is_sdxl_base_header(header: CheckpointHeader) -> bool:
    return is_sdxl_unet(header) and header.has_prefix(SDXL_TEXT_L) and header.has_prefix(SDXL_TEXT_G)


def is_playground_header(header: CheckpointHeader) -> bool:
    return all(marker in header for marker in PLAYGROUND_MARKERS)


def is_sdxl_base_folder(configs: FolderConfigs) -> bool:
    return (
        configs.unet.get("addition_embed_type") == "text_time"
        and configs.has_component("text_encoder")
        and configs.has_component("text_encoder_2")
    )


def is_edm_folder(configs: FolderConfigs) -> bool:
    return str(configs.scheduler.get("_class_name", "")).startswith("EDM")


class SDXL(ModelFamily):
    name = "sdxl"
    label = "Stable Diffusion XL 1.0"
    default_size = (1024, 1024)
    prediction_type = "epsilon"
    config_name = "sdxl"
    pipeline_class_name = "StableDiffusionXLPipeline"
    tokenizer_pad_tokens = SDXL_PADS
    has_safety_checker = False
    expected_in_channels: ClassVar[int] = 4

    def match_header(self, header: CheckpointHeader) -> bool:
        return (
            is_sdxl_base_header(header)
            and not is_playground_header(header)
            and unet_in_channels(header) == self.expected_in_channels
        )

    def match_configs(self, configs: FolderConfigs) -> bool:
        return (
            is_sdxl_base_folder(configs)
            and not is_edm_folder(configs)
            and configs.unet.get("in_channels", 4) == self.expected_in_channels
        )


class SDXLInpaint(SDXL):
    name = "sdxl-inpaint"
    label = "Stable Diffusion XL inpainting"
    is_inpaint = True
    priority = 10
    config_name = "sdxl-inpaint"
    pipeline_class_name = "StableDiffusionXLInpaintPipeline"
    expected_in_channels = 9
