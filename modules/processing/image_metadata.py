"""Infotext inside image files, where A1111 puts it: the PNG ``parameters`` text chunk, EXIF UserComment for
JPEG/WebP/AVIF, ``comment`` for GIF; read back from any of those, and from NovelAI's PNG fields."""


import io
import json
import logging
import threading
import weakref
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import piexif
import piexif.helper
from PIL import Image, features
from PIL.PngImagePlugin import PngInfo

from modules.core.errors import UserInputError
from modules.processing.infotext import build_infotext

logger = logging.getLogger(__name__)

PIL_FORMATS: dict[str, str] = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
if features.check("avif"):
    PIL_FORMATS["avif"] = "AVIF"
EXIF_FORMATS = {"JPEG", "WEBP", "AVIF"}
IMAGE_SUFFIXES = frozenset(f".{ext}" for ext in PIL_FORMATS)

IGNORED_INFO_KEYS = frozenset(
    {
        "jfif",
        "jfif_version",
        "jfif_unit",
        "jfif_density",
        "dpi",
        "exif",
        "loop",
        "background",
        "timestamp",
        "duration",
        "progressive",
        "progression",
        "icc_profile",
        "chromaticity",
        "photoshop",
        "adobe",
        "adobe_transform",
        "xmp",
        "XML:com.adobe.xmp",
        "transparency",
        "gamma",
        "srgb",
        "aspect",
    }
)
"""Image.info entries that are container details, not metadata a user would want to see or carry over."""

NOVELAI_SAMPLERS: dict[str, str] = {
    "k_euler_ancestral": "Euler a",
    "k_euler": "Euler",
    "k_lms": "LMS",
    "k_heun": "Heun",
    "k_dpm_2": "DPM2",
    "k_dpm_2_ancestral": "DPM2 a",
    "k_dpmpp_2m": "DPM++ 2M",
    "k_dpmpp_2s_ancestral": "DPM++ 2S a",
    "k_dpmpp_sde": "DPM++ SDE",
    "k_dpmpp_2m_sde": "DPM++ 2M SDE",
    "k_dpm_fast": "DPM fast",
    "k_dpm_adaptive": "DPM adaptive",
    "ddim": "DDIM",
    "ddim_v3": "DDIM",
    "plms": "PLMS",
}


def pil_format(fmt: str) -> str:
    name = fmt.lower().lstrip(".")
    if name not in PIL_FORMATS:
        raise UserInputError("format", f"unsupported image format {fmt!r}; allowed: {', '.join(PIL_FORMATS)}")
    return PIL_FORMATS[name]


def _exif_with_comment(text: str) -> bytes:
    comment = piexif.helper.UserComment.dump(text, encoding="unicode")
    return piexif.dump({"0th": {}, "Exif": {piexif.ExifIFD.UserComment: comment}, "GPS": {}, "1st": {}})


def embed_infotext(
    image: Image.Image, infotext: str | None, fmt: str, quality: int = 80, *, lossless: bool = False
) -> bytes:
    """Encode ``image`` as ``fmt`` with ``infotext`` where A1111 puts it, and return the file's bytes.

    PNG keeps the other text entries of ``image.info`` (a re-saved image keeps its extra metadata) and writes
    ``parameters`` (iTXt when the text is not Latin-1, as tEXt cannot hold it). JPEG, WebP and AVIF get an EXIF
    UserComment in piexif's "unicode" encoding; JPEG's EXIF segment is limited to 64 KiB, so an infotext that
    does not fit is left out with a warning rather than failing a finished generation. GIF gets ``comment``.
    """
    image_format = pil_format(fmt)
    buffer = io.BytesIO()
    if image_format == "PNG":
        info = PngInfo()
        for key, value in image.info.items():
            if isinstance(key, str) and isinstance(value, str) and key != "parameters" and key not in IGNORED_INFO_KEYS:
                info.add_text(key, value)
        if infotext:
            info.add_text("parameters", infotext)
        image.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()

    if image_format == "GIF":
        extra = {"comment": infotext.encode("utf-8")} if infotext else {}
        image.save(buffer, format="GIF", **extra)
        return buffer.getvalue()

    if image_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    kwargs: dict[str, Any] = {"quality": quality}
    if image_format == "WEBP":
        kwargs["lossless"] = lossless
    if infotext:
        exif = _exif_with_comment(infotext)
        if image_format == "JPEG" and len(exif) > 65533:
            logger.warning("infotext of %d characters does not fit in JPEG EXIF; saved without it", len(infotext))
        else:
            kwargs["exif"] = exif
    image.save(buffer, format=image_format, **kwargs)
    return buffer.getvalue()


class ImageEncoder:
    """``embed_infotext`` with a memory of its last few results, so one image written twice (the sample in the
    outputs folder, then the job's result file) is compressed once: a 1024² PNG costs 0.1-0.3 s of the job.

    A result is reused only for the same image object (held weakly), the same pixels (a CRC of them: a script that
    draws on an image after it was saved gets a fresh encoding), the same infotext and the same format options.
    """

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self.hits = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[Any, ...], tuple[weakref.ref[Image.Image], bytes]] = OrderedDict()

    def encode(self, image: Image.Image, infotext: str | None, fmt: str, quality: int = 80, *,
               lossless: bool = False) -> bytes:
        info = tuple(sorted((k, v) for k, v in image.info.items() if isinstance(k, str) and isinstance(v, str)))
        key = (id(image), image.mode, image.size, zlib.crc32(image.tobytes()), info, infotext, fmt.lower(),
               quality, lossless)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0]() is image:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
        data = embed_infotext(image, infotext, fmt, quality, lossless=lossless)
        with self._lock:
            for stale in [k for k, (ref, _) in self._entries.items() if ref() is None]:  # images freed since
                del self._entries[stale]
            self._entries[key] = (weakref.ref(image), data)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return data


def open_image(data: bytes | Image.Image, field: str = "image") -> Image.Image:
    if isinstance(data, Image.Image):
        return data
    try:
        return Image.open(io.BytesIO(data))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise UserInputError(field, f"not a readable image ({exc})") from exc


def _exif_user_comment(exif_bytes: object) -> str | None:
    if not isinstance(exif_bytes, bytes) or not exif_bytes:
        return None
    try:
        exif = piexif.load(exif_bytes)
    except Exception:  # piexif raises assorted errors on damaged EXIF; such a comment is simply unreadable
        return None
    raw = exif.get("Exif", {}).get(piexif.ExifIFD.UserComment, b"")
    if not raw:
        return None
    try:
        text = piexif.helper.UserComment.load(raw)
    except ValueError:
        text = raw.decode("utf-8", errors="ignore")
    return text or None


def _novelai_infotext(items: Mapping[str, Any], size: tuple[int, int]) -> str | None:
    try:
        meta = json.loads(items["Comment"])
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    params: dict[str, object] = {
        "Steps": meta.get("steps"),
        "Sampler": NOVELAI_SAMPLERS.get(str(meta.get("sampler")), "Euler a"),
        "CFG scale": meta.get("scale"),
        "Seed": meta.get("seed"),
        "Size": f"{size[0]}x{size[1]}",
        "Clip skip": 2,  # NovelAI's models were trained with the penultimate CLIP layer
        "ENSD": 31337,
    }
    return build_infotext(str(items.get("Description", "")), str(meta.get("uc", "") or ""), params)


def read_infotext(data: bytes | Image.Image) -> tuple[str | None, dict[str, Any]]:
    """Return ``(infotext or None, other metadata)`` from an image or its file bytes.

    Looks, in order, at the PNG ``parameters`` entry, an EXIF UserComment (JPEG/WebP/AVIF, or a PNG eXIf chunk),
    a GIF ``comment``, and a NovelAI PNG (``Software: NovelAI``), whose JSON is converted to an A1111 infotext.
    """
    image = open_image(data)
    items: dict[str, Any] = {str(key): value for key, value in image.info.items()}
    text = items.pop("parameters", None)
    if not isinstance(text, str):
        text = None
    if text is None:
        text = _exif_user_comment(items.get("exif"))
    if text is None and isinstance(items.get("comment"), bytes):
        text = items.pop("comment").decode("utf-8", errors="ignore") or None
    if text is None and items.get("Software") == "NovelAI":
        text = _novelai_infotext(items, image.size)
    others = {k: v for k, v in items.items() if k not in IGNORED_INFO_KEYS and not isinstance(v, bytes)}
    return text, others
