"""Images on the wire: base64 (bare or as a data URL) in, base64 with the infotext embedded out. A bad image is a
4xx naming the request field."""


import base64
import binascii
import logging
import re

from PIL import Image

from modules.core.errors import UserInputError
from modules.core.limits import DEFAULT_MAX_IMAGE_PIXELS, check_pixels
from modules.processing.image_metadata import embed_infotext, open_image

logger = logging.getLogger(__name__)

def encode_base64(image: Image.Image, fmt: str = "png", infotext: str | None = None, quality: int = 80) -> str:
    """Return the image file (with its infotext embedded) as bare base64, as A1111's API returns images."""
    return base64.b64encode(embed_infotext(image, infotext, fmt, quality)).decode("ascii")


RE_DATA_URL = re.compile(r"^data:image/[\w.+-]+(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)


def open_base64_image(s: str, field: str = "image", max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
                      ) -> Image.Image:
    """Open bare base64 or a ``data:image/...;base64,`` URL *without decoding its pixels*: the header, size and
    the metadata stored before the image data (PNG text chunks, EXIF) are read, nothing else.

    ``max_pixels`` (``--max-image-pixels``) is checked on the declared size, before anything is decoded.
    Raises :class:`UserInputError` naming ``field`` for anything that is not an image or is too large.
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
    if max_pixels is not None:
        check_pixels(field, image.width, image.height, max_pixels, "--max-image-pixels", "image")
    return image


def decode_base64_image(s: str, field: str = "image", max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
                        ) -> Image.Image:
    """Decode bare base64 or a ``data:image/...;base64,`` URL into a loaded image (size checked first, as in
    :func:`open_base64_image`), so a bad or oversized upload is a 422 naming ``field``, never a 500."""
    image = open_base64_image(s, field, max_pixels)
    try:
        image.load()
    except Exception as exc:  # untrusted data: Pillow's decoders raise many kinds (SyntaxError, struct.error...)
        raise UserInputError(field, f"image data is damaged or too large ({exc})") from exc
    return image
