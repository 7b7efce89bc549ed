"""The checkpoint catalog: what is in ``models/Stable-diffusion``, with A1111 titles and short hashes.

Scanning only lists files and reads nothing heavy. Hashes (sha256; the short hash is its first 10 hex digits,
as A1111 shows them) are computed lazily - when a model is loaded or a client asks for them - and cached in the
data dir keyed by path, size and mtime, so a start never hashes gigabytes. A diffusers folder is hashed over
its ``model_index.json`` and weight files in a fixed order.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modules.core.atomic import atomic_write_json
from modules.core.errors import NotFoundError, UserInputError
from modules.core.hashing import files_sha256

log = logging.getLogger(__name__)

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".json", ".txt", ".model")


@dataclass
class CheckpointInfo:
    """One model found on disk."""

    path: Path
    name: str  # relative to the checkpoints folder, with extension for files (A1111 "filename" title part)
    format: str  # "diffusers" | "safetensors" | "pickle"
    size_bytes: int
    sha256: str | None = None
    family: str | None = None

    @property
    def model_name(self) -> str:
        """A1111 ``model_name``: the name without folder suffix or extension."""
        stem = self.name
        for suffix in (*SAFE_SUFFIXES, *PICKLE_SUFFIXES):
            if stem.endswith(suffix):
                return stem[: -len(suffix)]
        return stem

    @property
    def shorthash(self) -> str | None:
        return self.sha256[:10] if self.sha256 else None

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]" if self.shorthash else self.name

    @property
    def is_pickle(self) -> bool:
        return self.format == "pickle"


class HashCache:
    """sha256 of files and folders, cached on disk by (path, size, mtime)."""

    def __init__(self, cache_file: Path) -> None:
        self._file = cache_file
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, object]] = {}
        if cache_file.exists():
            try:
                loaded = json.loads(cache_file.read_text(encoding="utf-8"))
                if isinstance(loaded, dict):
                    self._entries = loaded
            except ValueError:
                log.warning("hash cache %s is unreadable; starting a new one", cache_file)

    def cached(self, path: Path) -> str | None:
        key, stamp = str(path), _stamp(path)
        with self._lock:
            entry = self._entries.get(key)
        if entry and entry.get("stamp") == stamp:
            return str(entry["sha256"])
        return None

    def compute(self, path: Path) -> str:
        known = self.cached(path)
        if known:
            return known
        value = files_sha256(_hashed_files(path))
        with self._lock:
            self._entries[str(path)] = {"stamp": _stamp(path), "sha256": value}
            atomic_write_json(self._file, self._entries)
        return value


def _hashed_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    return [p for p in files if p.name != "README.md"]


def _stamp(path: Path) -> list[float]:
    if path.is_file():
        stat = path.stat()
        return [stat.st_size, stat.st_mtime]
    files = _hashed_files(path)
    return [sum(p.stat().st_size for p in files), max((p.stat().st_mtime for p in files), default=0.0)]


def _folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class CheckpointCatalog:
    """Scans a checkpoints folder; finds checkpoints by title, name, hash or path."""

    def __init__(self, folder: Path, hash_cache: HashCache) -> None:
        self.folder = folder
        self.hashes = hash_cache
        self._lock = threading.Lock()
        self._entries: list[CheckpointInfo] = []

    def refresh(self) -> list[CheckpointInfo]:
        found: list[CheckpointInfo] = []
        if self.folder.is_dir():
            found = list(self._scan(self.folder))
        for entry in found:
            entry.sha256 = self.hashes.cached(entry.path)
        found.sort(key=lambda item: item.name.lower())
        with self._lock:
            self._entries = found
        return list(found)

    def _scan(self, root: Path) -> Iterable[CheckpointInfo]:
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root).as_posix()
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            if path.is_dir() and (path / "model_index.json").is_file():
                yield CheckpointInfo(path, relative, "diffusers", _folder_size(path))
            elif path.is_file() and path.suffix in SAFE_SUFFIXES and not _inside_diffusers_folder(path, root):
                yield CheckpointInfo(path, relative, "safetensors", path.stat().st_size)
            elif path.is_file() and path.suffix in (".ckpt", ".pt") and not _inside_diffusers_folder(path, root):
                yield CheckpointInfo(path, relative, "pickle", path.stat().st_size)

    @property
    def entries(self) -> list[CheckpointInfo]:
        with self._lock:
            return list(self._entries)

    def ensure_hash(self, entry: CheckpointInfo) -> str:
        if entry.sha256 is None:
            entry.sha256 = self.hashes.compute(entry.path)
        return entry.sha256

    def find(self, query: str) -> CheckpointInfo | None:
        """By title, name, model name, short or full hash, or a path inside the folder (A1111 aliases)."""
        text = query.strip()
        if not text:
            return None
        entries = self.entries
        for entry in entries:
            if text in (entry.title, entry.name, entry.model_name, str(entry.path)):
                return entry
        bare = text.split(" [", 1)[0]
        for entry in entries:
            if bare in (entry.name, entry.model_name):
                return entry
        lowered = text.lower().strip("[]")
        if len(lowered) >= 8 and all(ch in "0123456789abcdef" for ch in lowered):
            for entry in entries:
                if entry.sha256 and entry.sha256.startswith(lowered):
                    return entry
        return None

    def check(self, name: str, field: str, *, allow_path: bool = False, allow_pickle: bool = False) -> None:
        """Refuse (422 naming ``field``) a checkpoint this catalog does not know, rescanning once first: it may
        have just been copied in; and a pickle checkpoint unless ``allow_pickle`` (both would fail every later job
        if they were accepted). ``allow_path`` also accepts an existing file or folder anywhere (scripts may name
        one; requests may not)."""
        entry = self.find(name)
        if entry is None and allow_path and Path(name).exists():
            return
        if entry is None:
            self.refresh()
            entry = self.find(name)
        if entry is None:
            available = ", ".join(entry.title for entry in self.entries) or f"none (put models in {self.folder})"
            raise UserInputError(field, f"unknown checkpoint {name!r}; available: {available}")
        if entry.is_pickle and not allow_pickle:
            raise UserInputError(field, f"{entry.title} is a pickle checkpoint, refused without --allow-pickle "
                                        "(pickle files can run code when loaded); convert it to .safetensors")

    def get(self, query: str, field: str = "sd_model_checkpoint") -> CheckpointInfo:
        entry = self.find(query)
        if entry is None:
            names = ", ".join(item.title for item in self.entries) or f"none (put models in {self.folder})"
            raise NotFoundError(f"{field}: unknown checkpoint {query!r}; available: {names}")
        return entry


def _inside_diffusers_folder(path: Path, root: Path) -> bool:
    for parent in path.parents:
        if parent == root:
            return False
        if (parent / "model_index.json").is_file():
            return True
    return False
