"""A1111's file-name patterns (``[seed]-[prompt_spaces]``, ``[date<%d.%m.%Y>]``...) and safe file-name parts."""


import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from PIL import Image

logger = logging.getLogger(__name__)

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


def truncate_utf8(text: str, max_bytes: int) -> str:
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




def safe_dir_name(name: str) -> str:
    name = sanitize_filename_part(name, replace_spaces=False)
    if name.split(".")[0].upper() in WINDOWS_RESERVED_NAMES:
        name = f"{name}_"
    return name
