"""SDXL refiner 1.0: an img2img-only second-pass model conditioned on OpenCLIP bigG alone plus an aesthetic score.

Its single file keeps bigG at `conditioner.embedders.0.model.` (there is no CLIP ViT-L), which is what tells it
apart from the base model; in a folder, `text_time` conditioning with `text_encoder_2` but no `text_encoder`.
"""

from __future__ import annotations

from modules.models.families.base import CheckpointHeader, FolderConfigs, ModelFamily
from modules.models.families.signatures import REFINER_TEXT_G, SDXL_TEXT_L, is_sdxl_unet, unet_in_channels


class SDXLRefiner(ModelFamily):
    name = "sdxl-refiner"
    label = "Stable Diffusion XL refiner 1.0"
    default_size = (1024, 1024)
    prediction_type = "epsilon"
    config_name = "sdxl-refiner"
    pipeline_class_name = "StableDiffusionXLImg2ImgPipeline"
    tokenizer_pad_tokens = {"tokenizer_2": "!"}
    has_safety_checker = False

    def match_header(self, header: CheckpointHeader) -> bool:
        return (
            is_sdxl_unet(header)
            and header.has_prefix(REFINER_TEXT_G)
            and not header.has_prefix(SDXL_TEXT_L)
            and unet_in_channels(header) == 4
        )

    def match_configs(self, configs: FolderConfigs) -> bool:
        return (
            configs.unet.get("addition_embed_type") == "text_time"
            and configs.has_component("text_encoder_2")
            and not configs.has_component("text_encoder")
        )
