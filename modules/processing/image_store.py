"""The output store: generated images saved in A1111's folder layout, listed and served back safely.

Files are laid out as A1111 does (``<outputs>/txt2img-images/2026-11-21/00012-123-a cat.png``), so that users'
habits and third-party tools (image browsers, taggers) keep working, and every image carries its infotext in the
place A1111 puts it: the PNG ``parameters`` text chunk, EXIF UserComment for JPEG/WebP/AVIF, ``comment`` for GIF.

Writes are atomic and never overwrite: the bytes go to a hidden temporary file in the destination folder, are
fsynced, then hard-linked under the final name (``os.link`` fails if the name exists, so two writers can never
take the same counter), and the temporary name is removed. A crash leaves at most a hidden ``.easel-*.tmp``.
"""


import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date as date_type
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from PIL import Image

from modules.core.errors import NotFoundError, PermissionDeniedError, UserInputError
from modules.processing.filenames import (
    DEFAULT_DIR_PATTERN,
    DEFAULT_FILENAME_PATTERN,
    MAX_FILENAME_BYTES,
    RE_COUNTER,
    RE_DATE_DIR,
    FilenamePattern,
    safe_dir_name,
    sanitize_filename_part,
    truncate_utf8,
)
from modules.processing.grids import draw_grid_annotations, image_grid, labelled_grid
from modules.processing.image_codec import decode_base64_image, encode_base64
from modules.processing.image_metadata import (
    IMAGE_SUFFIXES,
    ImageEncoder,
    embed_infotext,
    pil_format,
    read_infotext,
)

__all__ = [  # the image helpers callers used to import from here
    "IMAGE_SUFFIXES", "KIND_DIRS", "FilenamePattern", "ImageStore", "OutputEntry", "decode_base64_image",
    "draw_grid_annotations", "embed_infotext", "encode_base64", "image_grid", "labelled_grid", "read_infotext",
    "sanitize_filename_part", "write_new_file",
]

logger = logging.getLogger(__name__)

KIND_DIRS: dict[str, str] = {
    "txt2img": "txt2img-images",
    "img2img": "img2img-images",
    "extras": "extras-images",
    "txt2img-grids": "txt2img-grids",
    "img2img-grids": "img2img-grids",
}
"""Output kind -> folder under the outputs root (A1111's default ``outdir_*`` names)."""


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
        self.encoder = ImageEncoder()
        """Encodes what is saved; a caller writing the same image again (a job's result file) reuses the bytes."""
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
        image_format = pil_format(fmt)
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
                name = safe_dir_name(tags.apply(component))
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
            decoration = truncate_utf8(
                sanitize_filename_part(tags.apply(pattern), replace_spaces=False), MAX_FILENAME_BYTES
            )
        extension = "jpg" if image_format == "JPEG" else fmt
        suffix = f"-{decoration}.{extension}" if decoration else f".{extension}"
        event = SaveEvent(image=image, infotext=infotext, kind=kind, context=context,
                          path=directory / f"{prefix}{_next_sequence_number(directory, prefix):0{digits}d}{suffix}")
        for listener in self.listeners:
            listener.before_save(event)
        data = self.encoder.encode(event.image, event.infotext, fmt, quality)

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
