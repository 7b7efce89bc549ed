"""Playground v2.5: the SDXL architecture trained with the EDM formulation, sampled by EDM DPM-Solver.

Its single file is recognised by the `edm_mean`/`edm_std` latent statistics it carries next to SDXL's keys; a
diffusers folder by an EDM scheduler on an SDXL-base layout. Its VAE latents are normalised by per-channel
mean/std (in configs/playground-v2.5/vae) instead of SDXL's single scaling factor.
"""

from __future__ import annotations

from modules.models.families.base import CheckpointHeader, FolderConfigs, ModelFamily
from modules.models.families.sdxl import (
    SDXL_PADS,
    is_edm_folder,
    is_playground_header,
    is_sdxl_base_folder,
    is_sdxl_base_header,
)
from modules.models.families.signatures import unet_in_channels


class PlaygroundV25(ModelFamily):
    name = "playground-v2.5"
    label = "Playground v2.5"
    default_size = (1024, 1024)
    prediction_type = "epsilon"  # under EDM preconditioning; see `uses_edm`
    uses_edm = True
    priority = 10
    config_name = "playground-v2.5"
    pipeline_class_name = "StableDiffusionXLPipeline"
    tokenizer_pad_tokens = SDXL_PADS
    has_safety_checker = False

    def match_header(self, header: CheckpointHeader) -> bool:
        return is_sdxl_base_header(header) and is_playground_header(header) and unet_in_channels(header) == 4

    def match_configs(self, configs: FolderConfigs) -> bool:
        return is_sdxl_base_folder(configs) and is_edm_folder(configs) and configs.unet.get("in_channels", 4) == 4
