"""A1111's ``modules.hashes`` for drop-in extensions: SHA-256 of model files, cached in Easel's hash cache
(``<data>/cache/hashes.json``, the one the checkpoint catalog uses), and the LoRA "addnet" hash."""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

from modules.core.hashing import file_sha256, safetensors_body_sha256
from modules.extensions import compat


def calculate_sha256(filename: str) -> str:
    return file_sha256(filename)


def _cache() -> Any:
    return compat.facade().catalog.hashes


def sha256_from_cache(filename: str, title: str = "", use_addnet_hash: bool = False) -> str | None:
    if use_addnet_hash or not Path(filename).exists():
        return None
    return _cache().cached(Path(filename))


def sha256(filename: str, title: str = "", use_addnet_hash: bool = False) -> str:
    if use_addnet_hash:
        with open(filename, "rb") as file:
            return addnet_hash_safetensors(file)
    return str(_cache().compute(Path(filename)))


def addnet_hash_safetensors(b: BinaryIO) -> str:
    """The kohya/additional-networks hash: SHA-256 of a safetensors file without its header."""
    return safetensors_body_sha256(b)
