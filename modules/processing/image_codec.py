"""Images on the wire: base64 (bare or as a data URL) in, base64 with the infotext embedded out. A bad image is a
4xx naming the request field."""


import base64
import binascii
import logging
import re

from PIL import Image

from modules.core.errors import UserInputError
from modules.processing.image_metadata import embed_infotext, open_image

logger = logging.getLogger(__name__)

def encode_base64(image: Image.Image, fmt: str = "png", infotext: str | None = None, quality: int = 80) -> str:
    """Return the image file (with its infotext embedded) as bare base64, as A1111's API returns images."""
    return base64.b64encode(embed_infotext(image, infotext, fmt, quality)).decode("ascii")


RE_DATA_URL = re.compile(r"^data:image/[\w.+-]+(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)


def decode_base64_image(s: str, field: str = "image") -> Image.Image:
    """Decode bare base64 or a ``data:image/...;base64,`` URL into a loaded image.

    Raises :class:`UserInputError` naming ``field`` for anything that is not a decodable image, so a bad upload
    is a 422 the client can act on instead of a 500.
    """
    if not isinstance(s, str) or not s.strip():
        raise UserInputError(field, "empty image data; expected base64 or a data:image/...;base64, URL")
    text = s.strip()
    if text.lower().startswith("data:"):
        match = RE_DATA_URL.match(text)
        if not match:
            raise UserInputError(field, "data URL must look like data:image/<type>;base64,<data>")
        text = text[match.end() :]
    text = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UserInputError(field, f"invalid base64 ({exc})") from exc
    image = open_image(raw, field)
    try:
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserInputError(field, f"image data is damaged or too large ({exc})") from exc
    return image
