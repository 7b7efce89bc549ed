"""Stable Diffusion 2.x: 512 epsilon (2.0/2.1-base) and 768 v-prediction (2.0/2.1 768-v).

Recognised by its OpenCLIP ViT-H text encoder (`cond_stage_model.model.` in a single file; gelu activation in a
diffusers folder). The two variants share every tensor shape, so v-prediction is read from evidence that tools
leave in the file (a `v_pred` key, modelspec / kohya metadata) or, in a folder, the scheduler config; an unmarked
single file is taken as 512 epsilon, and the user can pick the v family explicitly.
"""

from __future__ import annotations

from modules.models.families.base import CheckpointHeader, FolderConfigs, ModelFamily
from modules.models.families.signatures import SD2_TEXT, has_unet, is_sdxl_unet, marks_v_prediction, unet_in_channels

OPENCLIP_PAD = {"tokenizer": "!"}  # OpenCLIP pads with "!" (id 0), not with <|endoftext|>


def is_sd2_header(header: CheckpointHeader) -> bool:
    return has_unet(header) and not is_sdxl_unet(header) and header.has_prefix(SD2_TEXT)


def is_sd2_folder(configs: FolderConfigs) -> bool:
    if configs.unet.get("addition_embed_type") is not None or configs.has_component("text_encoder_2"):
        return False
    return configs.has_component("text_encoder") and configs.text_encoder.get("hidden_act") == "gelu"


class SD2(ModelFamily):
    name = "sd2"
    label = "Stable Diffusion 2.x (512, epsilon)"
    default_size = (512, 512)
    prediction_type = "epsilon"
    config_name = "sd2"
    tokenizer_pad_tokens = OPENCLIP_PAD

    def match_header(self, header: CheckpointHeader) -> bool:
        return is_sd2_header(header) and unet_in_channels(header) == 4 and not marks_v_prediction(header)

    def match_configs(self, configs: FolderConfigs) -> bool:
        return (
            is_sd2_folder(configs)
            and configs.unet.get("in_channels", 4) == 4
            and configs.scheduler.get("prediction_type", "epsilon") == "epsilon"
        )


class SD2V(SD2):
    name = "sd2-v"
    label = "Stable Diffusion 2.x (768, v-prediction)"
    default_size = (768, 768)
    prediction_type = "v_prediction"
    priority = 20
    config_name = "sd2-v"

    def match_header(self, header: CheckpointHeader) -> bool:
        return is_sd2_header(header) and unet_in_channels(header) == 4 and marks_v_prediction(header)

    def match_configs(self, configs: FolderConfigs) -> bool:
        return (
            is_sd2_folder(configs)
            and configs.unet.get("in_channels", 4) == 4
            and configs.scheduler.get("prediction_type") == "v_prediction"
        )
