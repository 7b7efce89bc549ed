"""Easel's processing core. Also A1111's ``modules.processing`` for drop-in extension scripts.

This package is imported by every core submodule, so it stays import-light: the A1111 names
(``process_images``, ``Processed``, ``StableDiffusionProcessingTxt2Img``, ``fix_seed``, ``create_infotext`` ...)
resolve lazily from :mod:`modules.extensions.a1111_processing`; core code never uses them.
"""

from __future__ import annotations

from typing import Any

_A1111_NAMES = (
    "StableDiffusionProcessing",
    "StableDiffusionProcessingTxt2Img",
    "StableDiffusionProcessingImg2Img",
    "Processed",
    "process_images",
    "fix_seed",
    "get_fixed_seed",
    "create_infotext",
)


def __getattr__(name: str) -> Any:
    if name in _A1111_NAMES:
        from modules.extensions.a1111_processing import EXPORTS

        return EXPORTS[name]
    raise AttributeError(f"module 'modules.processing' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_A1111_NAMES])
