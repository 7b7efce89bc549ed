"""A1111's ``modules.api.api`` helpers that extensions' own routes use (base64 image coding), onto Easel's."""

from __future__ import annotations

from typing import Any

from PIL import Image

from modules.processing.image_store import decode_base64_image, encode_base64


def decode_base64_to_image(encoding: str) -> Image.Image:
    """A PIL image from base64 (a ``data:image/...;base64,`` prefix is accepted); bad data is a 422."""
    return decode_base64_image(encoding, "image")


def encode_pil_to_base64(image: Image.Image) -> str:
    """PNG (with the image's infotext, if any) as base64, as A1111's API returns images."""
    info = image.info.get("parameters") if hasattr(image, "info") else None
    return encode_base64(image, "png", info)


def validate_sampler_name(name: str) -> str:
    from modules.extensions import compat

    return str(compat.facade().samplers.get(name).name)


def script_name_to_index(name: str, scripts: Any) -> int:
    titles = [script.title().lower() for script in scripts]
    try:
        return titles.index(name.lower())
    except ValueError:
        from modules.core.errors import UserInputError

        raise UserInputError("script_name", f"script {name!r} not found") from None
