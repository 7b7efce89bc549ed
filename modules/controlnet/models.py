"""Control models in ``models/ControlNet``: ControlNets, T2I-Adapters and IP-Adapters, as diffusers folders
(``config.json`` + weights) or single ``.safetensors`` files.

What a file is comes from its folder's ``config.json`` (``_class_name``) or, for a single file, from its tensor
names (read from the safetensors header only): ``adapter.*`` is a T2I-Adapter, ``image_proj.*``/``ip_adapter.*``
an IP-Adapter, anything else a ControlNet. IP-Adapters also need a CLIP vision encoder: an ``image_encoder``
folder beside the weights (h94's layout), so a folder holding ``image_encoder/`` and IP-Adapter ``.safetensors``
files lists each file, and a lone IP-Adapter file uses ``models/ControlNet/image_encoder``.

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

CONTROLNET = "controlnet"
T2I_ADAPTER = "t2i_adapter"
IP_ADAPTER = "ip_adapter"
KIND_LABELS = {CONTROLNET: "ControlNet", T2I_ADAPTER: "T2I-Adapter", IP_ADAPTER: "IP-Adapter"}
FOLDER_CLASSES = {"ControlNetModel": CONTROLNET, "T2IAdapter": T2I_ADAPTER}
"""``config.json`` ``_class_name`` -> kind; a config without ``_class_name`` is an older ControlNet export."""
KEY_PREFIXES = {"adapter.": T2I_ADAPTER, "image_proj.": IP_ADAPTER, "ip_adapter.": IP_ADAPTER}
IMAGE_ENCODER_FOLDER = "image_encoder"


@dataclass(frozen=True)
class ControlNetFile:
    name: str
    path: Path
    kind: str = CONTROLNET

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]

    @property
    def image_encoder(self) -> Path:
        """IP-Adapters: the CLIP vision encoder folder diffusers' ``load_ip_adapter`` layout puts beside them."""
        return self.path.parent / IMAGE_ENCODER_FOLDER


def strip_hash(name: str) -> str:
    """sd-webui-controlnet lists models as ``name [hash]``; clients send that back."""
    return _HASH_SUFFIX.sub("", name.strip())


class ControlNetCatalog:
    """Scans the ControlNet folder; loads ControlNets and T2I-Adapters on demand and keeps the last few loaded.
    IP-Adapters are listed and found here but loaded into the pipeline (``modules.controlnet.ip_adapter``)."""

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
                    kind = folder_kind(path)
                    if kind is not None:
                        files[path.name] = ControlNetFile(path.name, path, kind)
                elif path.is_dir() and (path / IMAGE_ENCODER_FOLDER / "config.json").is_file():
                    for weights in sorted(path.glob("*.safetensors")):
                        if file_kind(weights) == IP_ADAPTER:
                            files.setdefault(weights.stem, ControlNetFile(weights.stem, weights, IP_ADAPTER))
                elif path.is_file() and path.suffix.lower() == ".safetensors":
                    files.setdefault(path.stem, ControlNetFile(path.stem, path, file_kind(path)))
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
        """The ControlNet or T2I-Adapter named ``name`` (a single file's config follows ``base_unet``)."""
        file = self.find(name, field)
        loader = LOADERS.get(file.kind)
        if loader is None:
            raise UserInputError(field, f"{file.label} {file.name!r} is not loaded as a separate model")
        key = (file.name, id(base_unet) if not file.is_folder else 0)
        with self._lock:
            model = self._loaded.get(key)
            if model is not None:
                self._loaded.move_to_end(key)
                return model
            model = loader(file, base_unet)
            self._loaded[key] = model
            while len(self._loaded) > self.cache_size:
                self._loaded.popitem(last=False)
            return model

    def unload(self) -> None:
        with self._lock:
            self._loaded.clear()


def folder_kind(folder: Path) -> str | None:
    """The kind of a diffusers folder, or None for a folder that holds no control model (an image encoder)."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("skipping %s: unreadable config.json", folder)
        return None
    class_name = config.get("_class_name") if isinstance(config, dict) else None
    if class_name is None:
        return None if isinstance(config, dict) and "architectures" in config else CONTROLNET
    return FOLDER_CLASSES.get(class_name)


def file_kind(path: Path) -> str:
    """The kind of a single ``.safetensors`` file from its tensor names (the header only is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception:  # a damaged file still lists; loading it names the problem
        return CONTROLNET
    for key in keys:
        for prefix, kind in KEY_PREFIXES.items():
            if key.startswith(prefix):
                return kind
    return CONTROLNET


def family_label(config: Any) -> str:
    """A short name of the UNet family a (ControlNet or UNet) config belongs to, for error messages."""
    cross = _normalized(config.get("cross_attention_dim"))
    if config.get("addition_embed_type") == "text_time":
        name = "SDXL-refiner" if config.get("projection_class_embeddings_input_dim") == 2560 else "SDXL"
    else:
        name = {768: "SD1.x", 1024: "SD2.x"}.get(cross, "SD1.x/2.x") if isinstance(cross, int) else "SD1.x/2.x"
    return f"{name}-type (cross_attention_dim {cross})"


FAMILY_KEYS = ("cross_attention_dim", "addition_embed_type", "projection_class_embeddings_input_dim")
"""Config keys a ControlNet shares with the UNet it was copied from; any difference means another family."""


def check_controlnet_fits(model: Any, unet: Any, name: str, field: str) -> None:
    """Refuse a ControlNet built for another model family before it fails deep inside the UNet."""
    own, base = model.config, unet.config
    differs = [key for key in FAMILY_KEYS if _normalized(own.get(key)) != _normalized(base.get(key))]
    if len(own.get("block_out_channels", ())) != len(base.get("block_out_channels", ())):
        differs.append("block_out_channels")
    if differs:
        details = ", ".join(f"{key} {_normalized(own.get(key))} vs {_normalized(base.get(key))}" for key in differs)
        raise UserInputError(field, f"ControlNet {name!r} is for {family_label(own)} models but the loaded checkpoint "
                                    f"is {family_label(base)} ({details}); choose a ControlNet of the checkpoint's "
                                    "family")


def _normalized(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        values = tuple(value)
        return values[0] if len(set(values)) == 1 else values
    return value


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


def _load_t2i_adapter(file: ControlNetFile, base_unet: Any) -> Any:
    from modules.controlnet.t2i_adapter import load_t2i_adapter

    return load_t2i_adapter(file.path, base_unet)


LOADERS = {CONTROLNET: load_controlnet, T2I_ADAPTER: _load_t2i_adapter}
"""Kind -> loader of the models the catalog caches; IP-Adapters are patched into the pipeline instead."""
