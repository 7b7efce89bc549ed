"""File hashes: one implementation for the catalog, the VAE and LoRA lists and the A1111 ``modules.hashes``."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from modules import hashes
from modules.core.hashing import file_sha256, files_sha256, safetensors_body_sha256


def test_file_and_files_hashes_are_sha256_of_the_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"x" * (3 << 20) + b"tail")  # more than one read block
    second.write_bytes(b"second")
    assert file_sha256(first) == hashlib.sha256(first.read_bytes()).hexdigest()
    assert hashes.calculate_sha256(str(first)) == file_sha256(first)
    assert files_sha256([first, second]) == hashlib.sha256(first.read_bytes() + second.read_bytes()).hexdigest()


def test_addnet_hash_skips_the_safetensors_header() -> None:
    header = json.dumps({"__metadata__": {"ss_network_module": "networks.lora"}}).encode()
    body = bytes(range(256)) * 10
    data = len(header).to_bytes(8, "little") + header + body
    expected = hashlib.sha256(body).hexdigest()
    assert safetensors_body_sha256(io.BytesIO(data)) == expected
    assert hashes.addnet_hash_safetensors(io.BytesIO(data)) == expected
    other_header = json.dumps({"__metadata__": {"ss_network_module": "other"}}).encode()
    changed = len(other_header).to_bytes(8, "little") + other_header + body
    assert safetensors_body_sha256(io.BytesIO(changed)) == expected  # the header does not count
