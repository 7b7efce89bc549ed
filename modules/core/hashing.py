"""SHA-256 of model files, read in 1 MiB blocks: the one implementation the catalog, the VAE list, the LoRA list
and the A1111 ``modules.hashes`` façade share."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

BLOCK = 1 << 20


def update_from_stream(digest: hashlib._Hash, stream: BinaryIO) -> None:
    """Feed the rest of ``stream`` into ``digest``."""
    for block in iter(lambda: stream.read(BLOCK), b""):
        digest.update(block)


def files_sha256(paths: Iterable[Path]) -> str:
    """Hex SHA-256 of the files' bytes, one after the other (one file: its ordinary SHA-256)."""
    digest = hashlib.sha256()
    for path in paths:
        with Path(path).open("rb") as handle:
            update_from_stream(digest, handle)
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    return files_sha256([Path(path)])


def safetensors_body_sha256(stream: BinaryIO) -> str:
    """The kohya/additional-networks ("addnet") hash: SHA-256 of a safetensors file after its JSON header."""
    stream.seek(0)
    header_size = int.from_bytes(stream.read(8), "little")
    stream.seek(8 + header_size)
    digest = hashlib.sha256()
    update_from_stream(digest, stream)
    return digest.hexdigest()
