"""Extra networks: LoRA files from ``models/Lora`` and textual-inversion embeddings from ``models/embeddings``.

LoRA weights are loaded with diffusers' ``pipe.load_lora_weights(path, adapter_name=...)`` (which converts
kohya/A1111 files and needs peft) and weighted with ``pipe.set_adapters``; :class:`LoraActivation` removes
them again when the job ends, so the next job sees the untouched model (STYLE.md rule 7). Embedding files are
read into tensors here and handed to the prompt encoder by name; the encoder splices them into the token
embeddings during its forward pass only, so the model is never modified for them.

Hashes follow A1111: ``Lora hashes`` use the first 12 hex digits of the sha256 of a safetensors file's tensor
data (the header is skipped, the "addnet" hash civitai looks up), ``TI hashes`` the first 12 of the whole
file's sha256.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modules.core.errors import UserInputError
from modules.core.hashing import file_sha256, safetensors_body_sha256

if TYPE_CHECKING:
    from modules.models.manager import LoadedModel

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".ckpt", ".bin")
EMBEDDING_SUFFIXES = (".safetensors",)


class _HashMemo:
    """sha256 values by (path, size, mtime): a file is hashed once per change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str, int, float], str] = {}

    def get(self, path: Path, kind: str) -> str:
        stat = path.stat()
        key = (str(path), kind, stat.st_size, stat.st_mtime)
        with self._lock:
            found = self._values.get(key)
        if found is None:
            found = _addnet_hash(path) if kind == "addnet" else file_sha256(path)
            with self._lock:
                self._values[key] = found
        return found


def _addnet_hash(path: Path) -> str:
    if path.suffix != ".safetensors":
        return file_sha256(path)
    with path.open("rb") as handle:
        return safetensors_body_sha256(handle)


def _safetensors_metadata(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if size <= 0 or size > 100 * 1024 * 1024:
                return {}
            header = json.loads(handle.read(size))
    except (OSError, ValueError):
        return {}
    metadata = header.get("__metadata__") or {}
    result: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        result[key] = value
    return result


@dataclass
class LoraFile:
    name: str
    path: Path
    alias: str
    metadata: dict[str, Any]


@dataclass
class EmbeddingFile:
    name: str
    path: Path
    vectors: Any  # torch.Tensor (n, dim) or a list of them (SDXL: [clip_l, clip_g])
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    @property
    def widths(self) -> list[int]:
        tensors = self.vectors if isinstance(self.vectors, (list, tuple)) else [self.vectors]
        return [int(t.shape[-1]) for t in tensors]

    @property
    def count(self) -> int:
        tensors = self.vectors if isinstance(self.vectors, (list, tuple)) else [self.vectors]
        return int(tensors[0].shape[0]) if tensors[0].ndim == 2 else 1


CurrentModel = Callable[[], "LoadedModel | None"]
"""Returns the model in use (embeddings are checked against its text encoders' widths), or None."""


@dataclass
class NetworksService:
    """``services.networks``: lists and loads LoRA files and embeddings."""

    lora_dir: Path
    embeddings_dir: Path
    allow_pickle: bool = False
    current_model: CurrentModel | None = None
    _loras: dict[str, LoraFile] | None = None
    _embeddings: dict[str, EmbeddingFile] | None = None
    _embedding_errors: dict[str, str] = field(default_factory=dict)
    _hashes: _HashMemo = field(default_factory=_HashMemo)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- LoRA ------------------------------------------------------------------------------------------------
    def refresh_loras(self) -> list[dict[str, Any]]:
        found: dict[str, LoraFile] = {}
        suffixes = LORA_SUFFIXES + (PICKLE_SUFFIXES if self.allow_pickle else ())
        if self.lora_dir.is_dir():
            for path in sorted(self.lora_dir.rglob("*")):
                if path.suffix.lower() not in suffixes or not path.is_file():
                    continue
                metadata = _safetensors_metadata(path) if path.suffix == ".safetensors" else {}
                alias = str(metadata.get("ss_output_name") or path.stem)
                found.setdefault(path.stem, LoraFile(path.stem, path, alias, metadata))
        with self._lock:
            self._loras = found
        return self.loras()

    def _lora_map(self) -> dict[str, LoraFile]:
        if self._loras is None:
            self.refresh_loras()
        assert self._loras is not None
        return self._loras

    def loras(self) -> list[dict[str, Any]]:
        """``/sdapi/v1/loras`` entries: name, alias, path, metadata."""
        return [{"name": f.name, "alias": f.alias, "path": str(f.path), "metadata": f.metadata}
                for f in self._lora_map().values()]

    def find_lora(self, name: str) -> LoraFile | None:
        loras = self._lora_map()
        if name in loras:
            return loras[name]
        for lora in loras.values():
            if lora.alias == name or lora.name.lower() == name.lower():
                return lora
        self.refresh_loras()  # a file added since the last listing
        return self._lora_map().get(name)

    def lora_hash(self, lora: LoraFile) -> str:
        return self._hashes.get(lora.path, "addnet")[:12]

    # -- embeddings ------------------------------------------------------------------------------------------
    def refresh_embeddings(self) -> dict[str, Any]:
        found: dict[str, EmbeddingFile] = {}
        errors: dict[str, str] = {}
        suffixes = EMBEDDING_SUFFIXES + (PICKLE_SUFFIXES if self.allow_pickle else ())
        if self.embeddings_dir.is_dir():
            for path in sorted(self.embeddings_dir.rglob("*")):
                if path.suffix.lower() not in suffixes or not path.is_file() or path.stem in found:
                    continue
                try:
                    found[path.stem] = load_embedding(path)
                except Exception as exc:  # one broken file must not hide the others
                    errors[path.stem] = f"{exc.__class__.__name__}: {exc}"
                    log.warning("embedding %s could not be read: %s", path, exc)
        with self._lock:
            self._embeddings = found
            self._embedding_errors = errors
        return self.embeddings()

    def _embedding_map(self) -> dict[str, EmbeddingFile]:
        if self._embeddings is None:
            self.refresh_embeddings()
        assert self._embeddings is not None
        return self._embeddings

    def embeddings(self) -> dict[str, Any]:
        """``/sdapi/v1/embeddings``: ``loaded`` fit the current model's text encoder(s), the rest are ``skipped``."""
        widths = _model_widths(self.current_model() if self.current_model is not None else None)
        loaded: dict[str, Any] = {}
        skipped: dict[str, Any] = {}
        for name, emb in self._embedding_map().items():
            entry = {"step": emb.step, "sd_checkpoint": emb.sd_checkpoint,
                     "sd_checkpoint_name": emb.sd_checkpoint_name, "shape": emb.widths[0], "vectors": emb.count}
            fits = widths is None or _fits(emb, widths)
            (loaded if fits else skipped)[name] = entry
        return {"loaded": loaded, "skipped": skipped}

    def embeddings_in(self, texts: Iterable[str]) -> dict[str, EmbeddingFile]:
        """The embeddings whose names appear as words in ``texts`` (how A1111 uses TI: the file name as a token)."""
        embeddings = self._embedding_map()
        if not embeddings:
            return {}
        joined = "\n".join(texts)
        used = {}
        for name, emb in embeddings.items():
            if re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", joined, re.IGNORECASE):
                used[name] = emb
        return used

    def embedding_hash(self, emb: EmbeddingFile) -> str:
        return self._hashes.get(emb.path, "sha256")[:12]


def _model_widths(model: LoadedModel | None) -> list[int] | None:
    if model is None:
        return None
    pipe = model.pipe
    widths = []
    for name in ("text_encoder", "text_encoder_2"):
        encoder = getattr(pipe, name, None)
        if encoder is not None:
            widths.append(int(encoder.get_input_embeddings().embedding_dim))
    return widths or None


def _fits(emb: EmbeddingFile, widths: Sequence[int]) -> bool:
    if isinstance(emb.vectors, (list, tuple)):
        return list(emb.widths) == list(widths)
    return all(width == emb.widths[0] for width in widths)


def load_embedding(path: Path) -> EmbeddingFile:
    """Read A1111 (``emb_params``, ``string_to_param``), SDXL (``clip_l``/``clip_g``) or diffusers (``<token>``)."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        data: dict[str, Any] = dict(load_file(str(path)))
    else:
        try:  # tensors, dicts, numbers and strings only, as checkpoints and LoRA: no code runs while loading
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises UnpicklingError or RuntimeError for refused objects
            raise UserInputError("embedding", f"{path.name}: not loaded: it holds more than tensors, numbers and "
                                              f"strings ({type(exc).__name__}); convert it to .safetensors") from exc
    step = sd_checkpoint = sd_checkpoint_name = None
    if isinstance(data, dict):
        step = data.get("step") if isinstance(data.get("step"), int) else None
        sd_checkpoint = data.get("sd_checkpoint") if isinstance(data.get("sd_checkpoint"), str) else None
        sd_checkpoint_name = data.get("sd_checkpoint_name") if isinstance(data.get("sd_checkpoint_name"), str) \
            else None
    vectors: Any
    if "clip_l" in data and "clip_g" in data:
        vectors = [data["clip_l"].float(), data["clip_g"].float()]
    elif "emb_params" in data:
        vectors = data["emb_params"]
    elif "string_to_param" in data:
        params = data["string_to_param"]
        vectors = next(iter(params.values()))
    else:
        tensors = [value for value in data.values() if isinstance(value, torch.Tensor)]
        if len(tensors) != 1:
            raise UserInputError("embedding", f"{path.name}: unknown embedding format (keys {list(data)[:5]})")
        vectors = tensors[0]
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().float()
        if vectors.ndim == 1:
            vectors = vectors.unsqueeze(0)
    return EmbeddingFile(path.stem, path, vectors, step, sd_checkpoint, sd_checkpoint_name)


# -- LoRA activation ------------------------------------------------------------------------------------------
@dataclass
class LoraActivation:
    """LoRA adapters loaded into one pipeline for one job; :meth:`remove` restores the pipeline."""

    pipe: Any
    adapters: list[str] = field(default_factory=list)

    def apply(self, entries: Sequence[tuple[LoraFile, float, float]]) -> None:
        """Load each ``(file, te_multiplier, unet_multiplier)`` as an adapter and activate them together."""
        if not entries:
            return
        if not hasattr(self.pipe, "load_lora_weights"):
            raise UserInputError("prompt", f"this model ({self.pipe.__class__.__name__}) cannot load LoRA weights")
        weights: list[dict[str, float]] = []
        for index, (lora, te, unet) in enumerate(entries):
            adapter = f"easel_{index}_{re.sub(r'[^0-9A-Za-z_]', '_', lora.name)}"
            try:
                self.pipe.load_lora_weights(str(lora.path), adapter_name=adapter)
            except Exception as exc:
                raise UserInputError("prompt", f"<lora:{lora.name}>: {lora.path.name} could not be loaded "
                                     f"({exc.__class__.__name__}: {exc})") from exc
            self.adapters.append(adapter)
            parts = {part for part, names in self.pipe.get_list_adapters().items() if adapter in names}
            weights.append({part: (unet if part in ("unet", "transformer") else te) for part in parts})
        self.pipe.set_adapters(self.adapters, adapter_weights=weights)

    def remove(self) -> None:
        if not self.adapters:
            return
        try:
            self.pipe.delete_adapters(self.adapters)
            remaining = {name for names in self.pipe.get_list_adapters().values() for name in names}
            if not remaining:
                self.pipe.unload_lora_weights()  # also drops the now empty peft wrapper layers
        finally:
            self.adapters = []
