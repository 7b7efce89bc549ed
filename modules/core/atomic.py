"""Atomic file writes: a crash mid-write must never leave a truncated config, queue or image behind.

Every write goes to a temporary file in the destination folder (same filesystem, so the rename is atomic),
is flushed and fsynced, then replaces the destination with ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | os.PathLike[str], obj: object, indent: int = 2) -> Path:
    """Serialise ``obj`` as JSON and write it atomically (the object is serialised before the file is touched)."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=str)
    return atomic_write_text(path, text + "\n")
