"""Images on disk and on the wire: infotext embedding/reading, the A1111 output layout, grids, base64.

Files are laid out as A1111 does (``<outputs>/txt2img-images/2026-11-21/00012-123-a cat.png``), so that users'
habits and third-party tools (image browsers, taggers) keep working, and every image carries its infotext in the
place A1111 puts it: the PNG ``parameters`` text chunk, EXIF UserComment for JPEG/WebP/AVIF, ``comment`` for GIF.

Writes are atomic and never overwrite: the bytes go to a hidden temporary file in the destination folder, are
fsynced, then hard-linked under the final name (``os.link`` fails if the name exists, so two writers can never
take the same counter), and the temporary name is removed. A crash leaves at most a hidden ``.easel-*.tmp``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date as date_type
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import piexif
import piexif.helper
from PIL import Image, ImageDraw, ImageFont, features
from PIL.PngImagePlugin import PngInfo

from modules.core.errors import NotFoundError, PermissionDeniedError, UserInputError
from modules.processing.infotext import build_infotext

logger = logging.getLogger(__name__)

PIL_FORMATS: dict[str, str] = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}
if features.check("avif"):
    PIL_FORMATS["avif"] = "AVIF"
EXIF_FORMATS = {"JPEG", "WEBP", "AVIF"}
IMAGE_SUFFIXES = frozenset(f".{ext}" for ext in PIL_FORMATS)

KIND_DIRS: dict[str, str] = {
    "txt2img": "txt2img-images",
    "img2img": "img2img-images",
    "extras": "extras-images",
    "txt2img-grids": "txt2img-grids",
    "img2img-grids": "img2img-grids",
}
"""Output kind -> folder under the outputs root (A1111's default ``outdir_*`` names)."""

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

DEFAULT_FILENAME_PATTERN = "[seed]-[prompt_spaces]"
DEFAULT_DIR_PATTERN = "[date]"
MAX_FILENAME_PART_CHARS = 128
MAX_FILENAME_BYTES = 200
"""A file name's decoration is cut to this many UTF-8 bytes: most filesystems allow 255 per name."""
PROMPT_WORDS = 8
INVALID_FILENAME_CHARS = '<>:"/\\|?*'
WINDOWS_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
)
RE_TAG = re.compile(r"\[(\w+)(?:<([^>\]]*)>)?\]")
RE_COUNTER = re.compile(r"^(\d+)(?:[-.]|$)")
RE_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")

FILENAME_TAGS: tuple[str, ...] = (
    "seed",
    "seed_first",
    "seed_last",
    "steps",
    "cfg",
    "width",
    "height",
    "sampler",
    "scheduler",
    "sampler_scheduler",
    "model_name",
    "model_hash",
    "vae_filename",
    "clip_skip",
    "denoising",
    "styles",
    "prompt",
    "prompt_spaces",
    "prompt_words",
    "prompt_no_styles",
    "prompt_hash",
    "negative_prompt_hash",
    "full_prompt_hash",
    "image_hash",
    "date",
    "datetime",
    "job_timestamp",
    "batch_number",
    "batch_size",
    "generation_number",
    "user",
    "none",
)
"""Tags understood in filename and directory patterns (case-insensitive); ``[datetime<%Y%m%d_%H%M%S>]`` and
``[date<%d.%m.%Y>]`` take a strftime format. Unknown tags are kept as written; tags without a value are dropped."""


# --------------------------------------------------------------------------------------------------- infotext


def _pil_format(fmt: str) -> str:
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
    pil_format = _pil_format(fmt)
    buffer = io.BytesIO()
    if pil_format == "PNG":
        info = PngInfo()
        for key, value in image.info.items():
            if isinstance(key, str) and isinstance(value, str) and key != "parameters" and key not in IGNORED_INFO_KEYS:
                info.add_text(key, value)
        if infotext:
            info.add_text("parameters", infotext)
        image.save(buffer, format="PNG", pnginfo=info)
        return buffer.getvalue()

    if pil_format == "GIF":
        extra = {"comment": infotext.encode("utf-8")} if infotext else {}
        image.save(buffer, format="GIF", **extra)
        return buffer.getvalue()

    if pil_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA", "L"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    kwargs: dict[str, Any] = {"quality": quality}
    if pil_format == "WEBP":
        kwargs["lossless"] = lossless
    if infotext:
        exif = _exif_with_comment(infotext)
        if pil_format == "JPEG" and len(exif) > 65533:
            logger.warning("infotext of %d characters does not fit in JPEG EXIF; saved without it", len(infotext))
        else:
            kwargs["exif"] = exif
    image.save(buffer, format=pil_format, **kwargs)
    return buffer.getvalue()


def _open_image(data: bytes | Image.Image, field: str = "image") -> Image.Image:
    if isinstance(data, Image.Image):
        return data
    try:
        return Image.open(io.BytesIO(data))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
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
    image = _open_image(data)
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


# --------------------------------------------------------------------------------------------------- base64


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
    image = _open_image(raw, field)
    try:
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise UserInputError(field, f"image data is damaged or too large ({exc})") from exc
    return image


# --------------------------------------------------------------------------------------------------- grids


def image_grid(images: Sequence[Image.Image], rows: int | None = None, margin: int = 0) -> Image.Image:
    """Paste ``images`` row by row into one grid.

    The default row count is A1111's automatic one: ``floor(sqrt(n))``, lowered until it divides ``n``, so a
    grid has no empty cells (6 -> 2x3, 8 -> 2x4, 7 -> 1x7). Cells take the largest image's size.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    count = len(images)
    if rows is None or rows <= 0:
        rows = max(1, math.isqrt(count))
        while count % rows:
            rows -= 1
    rows = min(rows, count)
    cols = math.ceil(count / rows)
    width = max(im.width for im in images)
    height = max(im.height for im in images)
    grid = Image.new("RGB", (cols * width + (cols - 1) * margin, rows * height + (rows - 1) * margin), "black")
    for index, im in enumerate(images):
        x, y = index % cols, index // cols
        grid.paste(im.convert("RGB"), (x * (width + margin), y * (height + margin)))
    return grid


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, max_width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and draw.textlength(candidate, font=font) > max_width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _label_lines(draw: ImageDraw.ImageDraw, label: str | Sequence[str], font: Any, max_width: int) -> list[str]:
    texts = [label] if isinstance(label, str) else list(label)
    return [line for text in texts for line in _wrap(draw, str(text), font, max_width)]


def draw_grid_annotations(
    grid: Image.Image,
    width: int,
    height: int,
    hor_texts: Sequence[str | Sequence[str]],
    ver_texts: Sequence[str | Sequence[str]],
    margin: int = 0,
) -> Image.Image:
    """Return ``grid`` with column labels above it and row labels to its left (the XYZ-plot look).

    ``width``/``height`` are one cell's size; each label is a string or several lines. Uses Pillow's bundled
    font, so nothing is downloaded.
    """
    font_size = max(10, (width + height) // 25)
    font = _font(font_size)
    line_height = font_size + font_size // 4
    spacing = font_size // 2
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad_left = width * 3 // 4 if ver_texts else 0
    col_lines = [_label_lines(probe, text, font, max(1, width - 2 * spacing)) for text in hor_texts]
    row_lines = [_label_lines(probe, text, font, max(1, pad_left - 2 * spacing)) for text in ver_texts]
    pad_top = (max(len(lines) for lines in col_lines) * line_height + 2 * spacing) if col_lines else 0

    result = Image.new("RGB", (grid.width + pad_left, grid.height + pad_top), "white")
    result.paste(grid, (pad_left, pad_top))
    draw = ImageDraw.Draw(result)

    def block(lines: list[str], cx: float, cy: float) -> None:
        top = cy - len(lines) * line_height / 2
        for i, line in enumerate(lines):
            draw.text((cx, top + i * line_height + line_height / 2), line, fill="black", font=font, anchor="mm")

    for col, lines in enumerate(col_lines):
        block(lines, pad_left + col * (width + margin) + width / 2, pad_top / 2)
    for row, lines in enumerate(row_lines):
        block(lines, pad_left / 2, pad_top + row * (height + margin) + height / 2)
    return result


def labelled_grid(
    images: Sequence[Image.Image],
    x_labels: Sequence[str | Sequence[str]],
    y_labels: Sequence[str | Sequence[str]],
    margin: int = 0,
) -> Image.Image:
    """A grid of ``len(y_labels)`` rows by ``len(x_labels)`` columns (images row-major), labelled on both axes."""
    cols, rows = max(1, len(x_labels)), max(1, len(y_labels))
    if len(images) != cols * rows:
        raise ValueError(f"labelled_grid needs {rows}x{cols} = {rows * cols} images, got {len(images)}")
    grid = image_grid(images, rows=rows, margin=margin)
    width = max(im.width for im in images)
    height = max(im.height for im in images)
    return draw_grid_annotations(grid, width, height, x_labels, y_labels, margin)


# --------------------------------------------------------------------------------------------------- file names


def sanitize_filename_part(text: str, replace_spaces: bool = True, max_chars: int = MAX_FILENAME_PART_CHARS) -> str:
    """Make ``text`` safe as (part of) one file name on Linux, macOS and Windows.

    Path separators, Windows-forbidden characters and control characters become ``_``; leading spaces and
    trailing spaces/dots (refused by Windows) are stripped, so ``..`` can never survive as a name.
    """
    if replace_spaces:
        text = text.replace(" ", "_")
    text = "".join("_" if ch in INVALID_FILENAME_CHARS or ord(ch) < 32 or ord(ch) == 127 else ch for ch in text)
    text = text.lstrip(" ")[:max_chars]
    return text.rstrip(" .")


def _truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore").rstrip(" .")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


class FilenamePattern:
    """Expands A1111 filename tags (``[seed]``, ``[prompt_words]``, ``[datetime<%Y%m%d>]`` ...); see FILENAME_TAGS."""

    def __init__(
        self,
        *,
        seed: object,
        prompt: str,
        image: Image.Image | None,
        now: datetime,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        self.seed = seed
        self.prompt = prompt or ""
        self.image = image
        self.now = now
        self.extra = dict(extra or {})

    def _value(self, tag: str, arg: str | None) -> object:
        extra = self.extra
        prompt = self.prompt
        if tag == "seed":
            return self.seed
        if tag in ("seed_first", "seed_last"):
            seeds = extra.get("all_seeds")
            if isinstance(seeds, Sequence) and not isinstance(seeds, str) and seeds:
                return seeds[0] if tag == "seed_first" else seeds[-1]
            return self.seed
        if tag == "cfg":
            return extra.get("cfg", extra.get("cfg_scale"))
        if tag in ("width", "height") and tag not in extra and self.image is not None:
            return self.image.width if tag == "width" else self.image.height
        if tag == "sampler_scheduler":
            parts = [str(extra[key]) for key in ("sampler", "scheduler") if extra.get(key)]
            return " ".join(parts) or None
        if tag == "prompt":
            return sanitize_filename_part(prompt, replace_spaces=True)
        if tag == "prompt_spaces":
            return sanitize_filename_part(prompt, replace_spaces=False)
        if tag == "prompt_no_styles":
            return sanitize_filename_part(str(extra.get("prompt_no_styles", prompt)), replace_spaces=False)
        if tag == "prompt_words":
            words = [word for word in re.split(r"[\s,()\[\]{}<>:|]+", prompt) if word]
            limit = int(arg) if arg and arg.isdigit() else PROMPT_WORDS
            return sanitize_filename_part(" ".join(words[:limit]), replace_spaces=False) or "empty_prompt"
        if tag == "prompt_hash":
            return _short_hash(prompt)
        if tag == "negative_prompt_hash":
            return _short_hash(str(extra.get("negative_prompt", "")))
        if tag == "full_prompt_hash":
            return _short_hash(f"{prompt} {extra.get('negative_prompt', '')}")
        if tag == "image_hash":
            return hashlib.sha256(self.image.tobytes()).hexdigest()[:8] if self.image is not None else None
        if tag == "styles":
            styles = extra.get("styles")
            return ", ".join(map(str, styles)) if isinstance(styles, (list, tuple)) else styles
        if tag == "date":
            return self.now.strftime(arg or "%Y-%m-%d")
        if tag == "datetime":
            return self.now.strftime(arg or "%Y%m%d%H%M%S")
        if tag == "job_timestamp":
            return extra.get("job_timestamp") or self.now.strftime("%Y%m%d%H%M%S")
        if tag == "none":
            return ""
        return extra.get(tag)

    def apply(self, pattern: str) -> str:
        """Expand the tags of ``pattern``; each tag's value is sanitized as one file name part."""

        def replace(match: re.Match[str]) -> str:
            tag = match.group(1).lower()
            if tag not in FILENAME_TAGS and tag not in self.extra:
                return match.group(0)
            value = self._value(tag, match.group(2))
            if value is None:
                return ""
            return sanitize_filename_part(str(value), replace_spaces=False)

        return RE_TAG.sub(replace, pattern)


# --------------------------------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class OutputEntry:
    """One saved image, as the history tab and the file server see it."""

    path: Path
    relative: str
    date: str
    kind: str
    infotext: str | None
    mtime: float


@dataclass
class SaveEvent:
    """One image being saved: ``before_save`` may replace ``image`` and ``infotext``; ``path`` is where it is
    about to go (the final path in ``after_save``)."""

    image: Image.Image
    infotext: str | None
    kind: str
    context: object
    path: Path


class SaveListener(Protocol):
    def before_save(self, event: SaveEvent) -> None: ...

    def after_save(self, event: SaveEvent) -> None: ...


class ImageStore:
    """Saves generated images under the outputs root in A1111's layout and serves them back safely.

    ``options`` returns the current :class:`modules.core.settings.Options` (or any mapping/object with A1111's
    saving keys); it is called on every save, so settings changes apply at once. ``outdir_*`` options are not
    honoured yet: everything lives under ``outputs_root`` so the file server can confine itself to it.
    """

    def __init__(
        self,
        outputs_root: str | os.PathLike[str],
        options: Callable[[], Any] | None = None,
        *,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.root = Path(outputs_root).expanduser().resolve()
        self._options = options
        self._clock = clock
        self._lock = threading.Lock()
        self.listeners: list[SaveListener] = []
        """Told about every save (A1111's ``before_image_saved``/``image_saved`` callbacks are one listener)."""

    def _option(self, name: str, default: Any) -> Any:
        opts = self._options() if self._options is not None else None
        if opts is None:
            return default
        value = opts.get(name) if isinstance(opts, Mapping) else getattr(opts, name, None)
        return default if value is None or value == "" else value

    def kind_dir(self, kind: str) -> Path:
        if kind not in KIND_DIRS:
            raise UserInputError("kind", f"unknown output kind {kind!r}; allowed: {', '.join(KIND_DIRS)}")
        return self.root / KIND_DIRS[kind]

    def save(
        self,
        image: Image.Image,
        *,
        kind: str,
        seed: object = None,
        prompt: str = "",
        infotext: str | None = None,
        fmt: str | None = None,
        filename_pattern: str | None = None,
        dir_pattern: str | None = None,
        save_to_dirs: bool | None = None,
        jpeg_quality: int | None = None,
        extra: Mapping[str, object] | None = None,
        context: object = None,
    ) -> Path:
        """Write ``image`` as ``<outputs>/<kind dir>/<dir pattern>/NNNNN-<filename pattern>.<fmt>``; return its path.

        Arguments left as None come from the options (``samples_format``/``grid_format``,
        ``samples_filename_pattern``, ``directories_filename_pattern``, ``save_to_dirs``, ``jpeg_quality``,
        ``enable_pnginfo``), then from A1111's defaults. Grids are named ``grid-NNNN`` unless a filename pattern
        is passed. ``extra`` feeds pattern tags (steps, cfg, sampler, model_name, batch_number, ...).
        ``context`` (the run that made the image, if any) is handed to the :attr:`listeners`; they may replace
        the image and the infotext before it is written.
        """
        is_grid = kind.endswith("-grids")
        base = self.kind_dir(kind)
        now = self._clock()
        fmt = (fmt or self._option("grid_format" if is_grid else "samples_format", "png")).lower()
        pil_format = _pil_format(fmt)
        quality = int(jpeg_quality if jpeg_quality is not None else self._option("jpeg_quality", 80))
        if save_to_dirs is None:
            save_to_dirs = bool(self._option("save_to_dirs", True))
        if not self._option("enable_pnginfo", True):
            infotext = None
        tags = FilenamePattern(seed=seed, prompt=prompt, image=image, now=now, extra=extra)

        directory = base
        if save_to_dirs:
            for component in re.split(
                r"[/\\]", dir_pattern or self._option("directories_filename_pattern", DEFAULT_DIR_PATTERN)
            ):
                name = _safe_dir_name(tags.apply(component))
                if name:
                    directory = directory / name
        # Components are sanitized (no separators, no "..") so this cannot fail; it guards future edits. It is
        # lexical on purpose: a user may symlink a kind folder to another disk, and saving must follow that.
        if not Path(os.path.normpath(directory)).is_relative_to(self.root):
            raise PermissionDeniedError(f"output folder {directory} is outside the outputs root {self.root}")

        if is_grid and filename_pattern is None:
            prefix, digits, decoration = "grid-", 4, ""
        else:
            pattern = (
                filename_pattern
                if filename_pattern is not None
                else self._option("samples_filename_pattern", DEFAULT_FILENAME_PATTERN)
            )
            prefix, digits = "", 5
            decoration = _truncate_utf8(
                sanitize_filename_part(tags.apply(pattern), replace_spaces=False), MAX_FILENAME_BYTES
            )
        extension = "jpg" if pil_format == "JPEG" else fmt
        suffix = f"-{decoration}.{extension}" if decoration else f".{extension}"
        event = SaveEvent(image=image, infotext=infotext, kind=kind, context=context,
                          path=directory / f"{prefix}{_next_sequence_number(directory, prefix):0{digits}d}{suffix}")
        for listener in self.listeners:
            listener.before_save(event)
        data = embed_infotext(event.image, event.infotext, fmt, quality)

        directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            # The folder is rescanned on every save (as A1111 does) rather than cached: another process or a user
            # may add or remove files, and the window in which a second process could pick the same number
            # shrinks to the scan-to-link interval. Overwriting is impossible either way (see write_new_file).
            start = _next_sequence_number(directory, prefix)
            path, _ = write_new_file(directory, data, lambda n: f"{prefix}{n:0{digits}d}{suffix}", start)
        logger.debug("saved %s", path)
        event.path = path
        for listener in self.listeners:
            listener.after_save(event)
        return path

    def list_outputs(self, kind: str | None = None, date: str | date_type | None = None) -> list[OutputEntry]:
        """Saved images, newest first, optionally of one kind and/or one day (``YYYY-MM-DD``).

        The day is the ``[date]`` folder an image sits in, or its modification day when it is not in one.
        Hidden files (temporaries) and symlinks are skipped, so nothing outside the root is listed.
        """
        kinds = [kind] if kind is not None else list(KIND_DIRS)
        wanted = date.isoformat() if isinstance(date, date_type) else date
        entries: list[OutputEntry] = []
        for name in kinds:
            base = self.kind_dir(name)
            if not base.is_dir():
                continue
            for folder, dirnames, filenames in os.walk(base, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for filename in filenames:
                    path = Path(folder) / filename
                    if filename.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or path.is_symlink():
                        continue
                    entry = self._entry(path, base, name, wanted)
                    if entry is not None:
                        entries.append(entry)
        entries.sort(key=lambda e: (e.mtime, e.relative), reverse=True)
        return entries

    def _entry(self, path: Path, base: Path, kind: str, wanted: str | None) -> OutputEntry | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        first = path.relative_to(base).parts[0]
        day = (
            first
            if RE_DATE_DIR.match(first) and first != path.name
            else (datetime.fromtimestamp(stat.st_mtime).date().isoformat())
        )
        if wanted is not None and day != wanted:
            return None
        try:
            with Image.open(path) as im:
                infotext, _ = read_infotext(im)
        except (OSError, ValueError, UserInputError):
            infotext = None
        return OutputEntry(
            path=path,
            relative=path.relative_to(self.root).as_posix(),
            date=day,
            kind=kind,
            infotext=infotext,
            mtime=stat.st_mtime,
        )

    def resolve_output_path(self, relative: str, *, must_exist: bool = False) -> Path:
        """Return the real path of ``relative`` inside the outputs root, or refuse it.

        Refused (:class:`PermissionDeniedError`, 403): absolute paths, drive letters, ``..`` components, NUL
        bytes, and anything whose real path (symlinks followed) is outside the root. With ``must_exist``, a path
        that is not an existing file is a :class:`NotFoundError`.
        """
        text = str(relative).replace("\\", "/")
        if not text or "\x00" in text:
            raise PermissionDeniedError(f"output path {relative!r} is empty or contains a NUL byte")
        posix = PurePosixPath(text)
        if posix.is_absolute() or re.match(r"^[A-Za-z]:", text) or text.startswith("~"):
            raise PermissionDeniedError(f"output path {relative!r} must be relative to the outputs folder")
        if ".." in posix.parts:
            raise PermissionDeniedError(f"output path {relative!r} may not contain '..'")
        resolved = (self.root / posix).resolve()
        if not resolved.is_relative_to(self.root):
            raise PermissionDeniedError(f"output path {relative!r} points outside the outputs folder")
        if must_exist and not resolved.is_file():
            raise NotFoundError(f"no output file {relative!r}")
        return resolved


def _safe_dir_name(name: str) -> str:
    name = sanitize_filename_part(name, replace_spaces=False)
    if name.split(".")[0].upper() in WINDOWS_RESERVED_NAMES:
        name = f"{name}_"
    return name


def _next_sequence_number(directory: Path, prefix: str) -> int:
    """One more than the largest counter of the files named ``<prefix>NNNN...`` in ``directory``."""
    highest = -1
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        if not name.startswith(prefix):
            continue
        match = RE_COUNTER.match(name[len(prefix) :])
        if match:
            highest = max(highest, int(match.group(1)))
    return highest + 1


def write_new_file(directory: Path, data: bytes, name_for: Callable[[int], str], start: int) -> tuple[Path, int]:
    """Write ``data`` atomically under the first free ``name_for(n)``, ``n >= start``; return (path, n).

    The data is fsynced in a hidden temporary file first and then hard-linked to the final name, which fails
    instead of overwriting when another writer took that name. Where hard links are not supported the
    temporary file is renamed after an existence check (safe within one process thanks to the store's lock).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=".easel-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        number = start
        use_link = True
        while True:
            target = directory / name_for(number)
            if use_link:
                try:
                    os.link(tmp_name, target)
                    return target, number
                except FileExistsError:
                    number += 1
                    continue
                except OSError:
                    use_link = False
            if target.exists():
                number += 1
                continue
            os.replace(tmp_name, target)
            return target, number
    finally:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
