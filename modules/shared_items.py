"""A1111's ``modules.shared_items``: the choice lists its settings and extensions read, from Easel's services."""

from __future__ import annotations

from typing import Any

from modules.extensions import compat


def list_checkpoint_tiles(use_short: bool = False) -> list[str]:
    from modules.sd_models import checkpoint_tiles

    return checkpoint_tiles(use_short)


def refresh_checkpoints() -> None:
    compat.facade().catalog.refresh()


def sd_vae_items() -> list[str]:
    from modules.sd_vae import _vae_files

    return ["Automatic", "None", *_vae_files()]


def refresh_vae_list() -> None:
    """VAE files are listed from disk on each read."""


def sd_unet_items() -> list[str]:
    return ["Automatic", "None"]


def refresh_unet_list() -> None:
    pass


def list_samplers() -> list[Any]:
    from modules.extensions.a1111_models import sampler_data

    return sampler_data()


def cross_attention_optimizations() -> list[str]:
    return ["Automatic"]


def postprocessing_scripts() -> list[Any]:
    return []


def realesrgan_models_names() -> list[str]:
    return []


def reload_hypernetworks() -> None:
    pass


def ui_reorder_categories() -> list[str]:
    from modules.extensions.a1111_ui import ordered_ui_categories

    return ordered_ui_categories()


def callbacks_order_settings() -> list[str]:
    return []
