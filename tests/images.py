"""Small images the tests send and compare: PNG base64 payloads and a control sketch."""

from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw


def png_b64(image: Image.Image) -> str:
    """The image as the base64 PNG string that API payloads carry."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def control_sketch(size: int = 48, margin: int = 8, stroke: int = 3) -> Image.Image:
    """A black circle outline around a red square on white: something for edge and line preprocessors to find."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((margin, margin, size - margin, size - margin), outline="black", width=stroke)
    draw.rectangle((size // 3, size // 3, size // 2, size // 2), fill=(200, 30, 30))
    return image
