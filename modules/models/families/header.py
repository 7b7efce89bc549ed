"""Reading a single-file checkpoint's key names and shapes without reading its tensors.

A safetensors file starts with an 8-byte little-endian length and a JSON header mapping every key to its dtype,
shape and byte range; that header is all a family needs to recognise the checkpoint. Pickle checkpoints have no
such header: they are only inspected (memory-mapped, weights_only) when the caller explicitly allows pickle.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from modules.models.families.base import (
    MAX_HEADER_BYTES,
    PICKLE_SUFFIXES,
    CheckpointHeader,
    FamilyError,
    TensorInfo,
    check_pickle_allowed,
)

# torch dtype name -> safetensors dtype spelling, so both formats report dtypes the same way.
_TORCH_TO_SAFETENSORS = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "int64": "I64",
    "int32": "I32",
    "int16": "I16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
}


def read_header(path: Path, *, allow_pickle: bool = False) -> CheckpointHeader:
    """Key -> (dtype, shape) of a .safetensors file (header bytes only), or of an allowed pickle checkpoint."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        check_pickle_allowed(path, allow_pickle)
        return _read_pickle_header(path)
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) != 8:
                raise FamilyError(f"{path}: too short to be a safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if length <= 0 or length > MAX_HEADER_BYTES:
                raise FamilyError(f"{path}: not a safetensors file (header length {length})")
            raw = handle.read(length)
    except OSError as error:
        raise FamilyError(f"{path}: cannot read checkpoint: {error}") from error
    if len(raw) != length:
        raise FamilyError(f"{path}: truncated safetensors header")
    try:
        parsed: dict[str, Any] = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise FamilyError(f"{path}: not a safetensors file (invalid JSON header)") from error
    metadata = parsed.pop("__metadata__", None) or {}
    tensors = {
        key: TensorInfo(dtype=str(entry["dtype"]), shape=tuple(int(n) for n in entry["shape"]))
        for key, entry in parsed.items()
        if isinstance(entry, dict) and "shape" in entry
    }
    return CheckpointHeader(
        path=path, tensors=tensors, metadata={str(k): str(v) for k, v in metadata.items()}, format="safetensors"
    )


def _read_pickle_header(path: Path) -> CheckpointHeader:
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        raise FamilyError(f"{path}: cannot read pickle checkpoint: {error}") from error
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else {}
    tensors = {
        key: TensorInfo(
            dtype=_TORCH_TO_SAFETENSORS.get(str(value.dtype).removeprefix("torch."), "?"), shape=tuple(value.shape)
        )
        for key, value in state.items()
        if isinstance(value, torch.Tensor)
    }
    if not tensors:
        raise FamilyError(f"{path}: pickle checkpoint holds no state dict")
    return CheckpointHeader(path=path, tensors=tensors, format="pickle")
