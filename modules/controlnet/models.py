"""ControlNet models in ``models/ControlNet``: diffusers folders (``config.json`` + weights) or single
``.safetensors`` files, loaded with diffusers' ``ControlNetModel``.

A single file carries no config. Its architecture follows the base model's UNet (a ControlNet is a copy of the
UNet's encoder), so the config is derived from the loaded checkpoint's UNet: diffusers-layout files are loaded
into ``ControlNetModel.from_unet(...)`` built on the meta device, original-layout files go through diffusers'
``from_single_file`` with that derived config written to a local folder (never fetched from a hub).
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.core.errors import NotFoundError, UserInputError

log = logging.getLogger(__name__)

NONE_MODEL = "None"
_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{6,}\]$")


@dataclass(frozen=True)
class ControlNetFile:
    name: str
    path: Path

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()


def strip_hash(name: str) -> str:
    """sd-webui-controlnet lists models as ``name [hash]``; clients send that back."""
    return _HASH_SUFFIX.sub("", name.strip())


class ControlNetCatalog:
    """Scans the ControlNet folder; loads models on demand and keeps the last few loaded."""

    def __init__(self, folder: Path, cache_size: int = 2) -> None:
        self.folder = folder
        self.cache_size = max(1, cache_size)
        self._files: dict[str, ControlNetFile] = {}
        self._loaded: OrderedDict[tuple[str, int], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        files: dict[str, ControlNetFile] = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.iterdir()):
                if path.is_dir() and (path / "config.json").is_file():
                    files[path.name] = ControlNetFile(path.name, path)
                elif path.is_file() and path.suffix.lower() == ".safetensors":
                    files.setdefault(path.stem, ControlNetFile(path.stem, path))
        self._files = files

    def names(self) -> list[str]:
        return list(self._files)

    def find(self, name: str, field: str = "model") -> ControlNetFile:
        key = strip_hash(name)
        found = self._files.get(key)
        if found is None:
            self.refresh()
            found = self._files.get(key)
        if found is None:
            available = ", ".join(self._files) or "none installed in models/ControlNet"
            raise UserInputError(field, f"unknown ControlNet model {name!r}; available: {available}")
        return found

    def load(self, name: str, base_unet: Any, field: str = "model") -> Any:
        file = self.find(name, field)
        key = (file.name, id(base_unet) if not file.is_folder else 0)
        with self._lock:
            model = self._loaded.get(key)
            if model is not None:
                self._loaded.move_to_end(key)
                return model
            model = load_controlnet(file, base_unet)
            self._loaded[key] = model
            while len(self._loaded) > self.cache_size:
                self._loaded.popitem(last=False)
            return model

    def unload(self) -> None:
        with self._lock:
            self._loaded.clear()


def load_controlnet(file: ControlNetFile, base_unet: Any) -> Any:
    from diffusers import ControlNetModel

    if file.is_folder:
        model = ControlNetModel.from_pretrained(str(file.path), local_files_only=True)
    else:
        model = _load_single_file(file.path, base_unet)
    return model.eval().requires_grad_(False)


def _load_single_file(path: Path, base_unet: Any) -> Any:
    from safetensors.torch import load_file

    if base_unet is None:
        raise NotFoundError(f"ControlNet {path.name} is a single file; load a checkpoint first to derive its config")
    state = load_file(str(path))
    if any(key.startswith("controlnet_cond_embedding.") for key in state):
        model = _from_unet_meta(base_unet, _embedding_channels(state))
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if missing or unexpected:
            raise UserInputError("model", f"ControlNet {path.name} does not fit the loaded checkpoint's UNet "
                                          f"({len(missing)} missing, {len(unexpected)} unexpected tensors)")
        return model
    from diffusers import ControlNetModel

    config = dict(_from_unet_meta(base_unet, None).config)
    with tempfile.TemporaryDirectory(prefix="easel-controlnet-") as folder:
        (Path(folder) / "config.json").write_text(json.dumps(config, default=list), encoding="utf-8")
        try:
            return ControlNetModel.from_single_file(str(path), config=folder, local_files_only=True)
        except Exception as exc:  # the converter's errors are not user-facing; name the file
            raise UserInputError("model", f"ControlNet {path.name} could not be converted ({exc})") from exc


def _embedding_channels(state: dict[str, Any]) -> tuple[int, ...]:
    channels = [state["controlnet_cond_embedding.conv_in.weight"].shape[0]]
    index = 1
    while f"controlnet_cond_embedding.blocks.{index}.weight" in state:
        channels.append(state[f"controlnet_cond_embedding.blocks.{index}.weight"].shape[0])
        index += 2
    return tuple(channels)


def _from_unet_meta(base_unet: Any, embedding: tuple[int, ...] | None) -> Any:
    import torch
    from diffusers import ControlNetModel

    kwargs: dict[str, Any] = {"load_weights_from_unet": False}
    if embedding is not None:
        kwargs["conditioning_embedding_out_channels"] = embedding
    with torch.device("meta"):
        return ControlNetModel.from_unet(base_unet, **kwargs)
