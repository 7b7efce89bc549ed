"""A1111's ``modules.lowvram``: whether the model runs offloaded (``--lowvram``/``--medvram``, applied by Easel's
memory strategies through diffusers' offload hooks, which place weights themselves)."""

from __future__ import annotations

from typing import Any

from modules.extensions import compat


def is_needed(sd_model: Any = None) -> bool:
    flags = compat.facade().settings.flags
    return bool(flags.lowvram or flags.medvram)


def is_enabled(sd_model: Any = None) -> bool:
    return is_needed(sd_model)


def apply(sd_model: Any = None) -> None:
    """Offload is set up when the model loads; nothing to do here."""


def setup_for_low_vram(sd_model: Any = None, use_medvram: bool = False) -> None:
    """Offload is set up when the model loads; nothing to do here."""


def send_everything_to_cpu() -> None:
    """diffusers' offload hooks move weights back after each use."""
