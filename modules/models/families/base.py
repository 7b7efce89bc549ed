"""What a model family is: how to recognise its checkpoints and how to load them offline.

A family is a small object, not a class hierarchy per checkpoint: the registry holds one instance per family and
`detect()` asks each in priority order. Recognition uses only cheap evidence (the safetensors JSON header, or a
diffusers folder's JSON configs) so that scanning a models folder never reads gigabytes of tensors.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline
    from transformers import CLIPTokenizer

from modules.core.errors import ModelLoadError

CONFIGS_DIR = Path(__file__).resolve().parents[3] / "configs"
TOKENIZER_DIR = CONFIGS_DIR / "tokenizers" / "clip"
SAFETENSORS_SUFFIXES = frozenset({".safetensors"})
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})
# A real safetensors header is a few hundred KB at most; refuse absurd lengths before allocating them.
MAX_HEADER_BYTES = 100 * 1024 * 1024


class FamilyError(ModelLoadError, ValueError):
    """A checkpoint that cannot be recognised or loaded; the message names the path and what to do.

    Also a ValueError so that callers outside the API layer can treat it as bad input without importing Easel's
    error hierarchy.
    """


class PickleRefusedError(FamilyError):
    """A .ckpt/.pt file can run arbitrary code when unpickled; loading one needs an explicit opt-in."""


@dataclass(frozen=True)
class TensorInfo:
    """dtype (safetensors spelling, e.g. "F16") and shape of one tensor, without its data."""

    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class CheckpointHeader:
    """Key names and shapes of a single-file checkpoint, plus the safetensors `__metadata__` strings."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    format: Literal["safetensors", "pickle"] = "safetensors"

    def __contains__(self, key: object) -> bool:
        return key in self.tensors

    def shape(self, key: str) -> tuple[int, ...] | None:
        """The shape of `key`, or None when the checkpoint lacks it."""
        info = self.tensors.get(key)
        return info.shape if info is not None else None

    def has_prefix(self, prefix: str) -> bool:
        return any(key.startswith(prefix) for key in self.tensors)

    def count_prefix(self, prefix: str) -> int:
        return sum(1 for key in self.tensors if key.startswith(prefix))


def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and (path / "model_index.json").is_file()


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise FamilyError(f"{path}: expected a JSON object")
    return data


@dataclass(frozen=True)
class FolderConfigs:
    """The JSON configs of a diffusers folder that families decide on (missing files read as {})."""

    path: Path
    model_index: dict[str, Any]
    unet: dict[str, Any]
    scheduler: dict[str, Any]
    text_encoder: dict[str, Any]
    text_encoder_2: dict[str, Any]
    vae: dict[str, Any]

    @classmethod
    def read(cls, path: Path) -> FolderConfigs:
        def optional(*parts: str) -> dict[str, Any]:
            file = path.joinpath(*parts)
            return read_json(file) if file.is_file() else {}

        return cls(
            path=path,
            model_index=read_json(path / "model_index.json"),
            unet=optional("unet", "config.json"),
            scheduler=optional("scheduler", "scheduler_config.json"),
            text_encoder=optional("text_encoder", "config.json"),
            text_encoder_2=optional("text_encoder_2", "config.json"),
            vae=optional("vae", "config.json"),
        )

    def has_component(self, name: str) -> bool:
        """True when model_index names a real component (diffusers writes [null, null] for absent ones)."""
        entry = self.model_index.get(name)
        return isinstance(entry, list) and len(entry) == 2 and entry[0] is not None

    @property
    def native_size(self) -> int | None:
        """unet sample_size times the VAE scale factor: the resolution the model was trained at."""
        sample = self.unet.get("sample_size")
        if isinstance(sample, list):
            sample = sample[0]
        if not isinstance(sample, int):
            return None
        blocks = self.vae.get("block_out_channels")
        factor = 2 ** (len(blocks) - 1) if isinstance(blocks, list) and blocks else 8
        return sample * factor


class ModelFamily(ABC):
    """One family of checkpoints sharing an architecture, pipeline, scheduler defaults and offline configs.

    Subclasses set the class attributes and the two `match_*` predicates; loading is shared because every
    family here is a diffusers pipeline built from a folder or from an LDM-layout single file.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    default_size: ClassVar[tuple[int, int]]
    prediction_type: ClassVar[str] = "epsilon"
    is_inpaint: ClassVar[bool] = False
    # EDM-trained (Playground v2.5): samplers must be the EDM variants, with sigma_data from the scheduler config.
    uses_edm: ClassVar[bool] = False
    # Priority in detect(): a more specific family (inpaint, v-prediction, playground) must be asked first.
    priority: ClassVar[int] = 100
    # diffusers pipeline class name used for loading (txt2img, or inpaint for inpainting checkpoints).
    pipeline_class_name: ClassVar[str] = "StableDiffusionPipeline"
    # Directory under configs/ holding this family's diffusers-format configs for single files.
    config_name: ClassVar[str]
    # Tokenizer subfolders and their pad token: OpenAI CLIP pads with <|endoftext|>, OpenCLIP with "!".
    tokenizer_pad_tokens: ClassVar[dict[str, str]] = {"tokenizer": "<|endoftext|>"}
    has_safety_checker: ClassVar[bool] = True

    def __repr__(self) -> str:
        return f"<ModelFamily {self.name}>"

    # -- recognition -------------------------------------------------------------------------------------
    @abstractmethod
    def match_header(self, header: CheckpointHeader) -> bool:
        """True when an LDM-layout single file belongs to this family, judged from key names and shapes."""

    @abstractmethod
    def match_configs(self, configs: FolderConfigs) -> bool:
        """True when a diffusers folder (its JSON configs) belongs to this family."""

    def match_folder(self, path: Path) -> bool:
        if not is_diffusers_folder(path) or not (path / "unet" / "config.json").is_file():
            return False
        return self.match_configs(FolderConfigs.read(path))

    # -- configuration -----------------------------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return CONFIGS_DIR / self.config_name

    def default_size_for(self, path: Path) -> tuple[int, int]:
        """The size a model was trained at: read from a folder's configs (tiny models report their own)."""
        if is_diffusers_folder(path):
            native = FolderConfigs.read(path).native_size
            if native:
                return (native, native)
        return self.default_size

    def default_scheduler_class_name(self, config_dir: Path | None = None) -> str:
        return str(read_json((config_dir or self.config_dir) / "scheduler" / "scheduler_config.json")["_class_name"])

    def default_scheduler_config(self) -> dict[str, Any]:
        """This family's scheduler config as shipped in configs/ (class name under `_class_name`)."""
        return read_json(self.config_dir / "scheduler" / "scheduler_config.json")

    # -- loading -----------------------------------------------------------------------------------------
    def pipeline_class(self) -> type[DiffusionPipeline]:
        import diffusers

        cls: type[DiffusionPipeline] = getattr(diffusers, self.pipeline_class_name)
        return cls

    def load(
        self,
        path: Path,
        *,
        torch_dtype: torch.dtype,
        allow_pickle: bool = False,
        config_dir: Path | None = None,
        **components: Any,
    ) -> DiffusionPipeline:
        """Build the pipeline without any network access.

        `config_dir` replaces the shipped configs/ dir for single files (tests use it for tiny architectures);
        `components` are passed through to diffusers (e.g. `vae=` for a VAE override).
        """
        path = Path(path)
        if path.is_dir():
            return self._load_folder(path, torch_dtype=torch_dtype, **components)
        if not path.is_file():
            raise FamilyError(f"{path}: no such checkpoint file or diffusers folder")
        check_pickle_allowed(path, allow_pickle)
        return self._load_single_file(path, torch_dtype=torch_dtype, config_dir=config_dir, **components)

    def _load_folder(self, path: Path, *, torch_dtype: torch.dtype, **components: Any) -> DiffusionPipeline:
        configs = FolderConfigs.read(path)
        kwargs: dict[str, Any] = {"local_files_only": True, "dtype": torch_dtype}
        if "safety_checker" in configs.model_index:
            kwargs["safety_checker"] = None
            kwargs["requires_safety_checker"] = False
        if "feature_extractor" in configs.model_index and not configs.has_component("feature_extractor"):
            kwargs["feature_extractor"] = None
        kwargs.update(components)
        try:
            pipe = self.pipeline_class().from_pretrained(path, **kwargs)
        except (OSError, ValueError) as error:
            raise FamilyError(f"{path}: cannot load diffusers folder as {self.label}: {error}") from error
        return pipe

    def _load_single_file(
        self, path: Path, *, torch_dtype: torch.dtype, config_dir: Path | None, **components: Any
    ) -> DiffusionPipeline:
        config = Path(config_dir) if config_dir is not None else self.config_dir
        if not (config / "model_index.json").is_file():
            raise FamilyError(f"{config}: missing offline config for {self.label} (model_index.json)")
        model_index = read_json(config / "model_index.json")
        kwargs: dict[str, Any] = {
            "config": str(config),
            "local_files_only": True,
            "dtype": torch_dtype,
        }
        for subfolder in self.tokenizer_pad_tokens:
            if subfolder in model_index and subfolder not in components and not (config / subfolder).is_dir():
                kwargs[subfolder] = self.load_tokenizer(subfolder)
        if "safety_checker" in model_index:
            kwargs["safety_checker"] = None
            kwargs["requires_safety_checker"] = False
        if "feature_extractor" in model_index:
            kwargs["feature_extractor"] = None
        kwargs.update(components)
        try:
            pipe = self.pipeline_class().from_single_file(str(path), **kwargs)
        except (OSError, ValueError, KeyError) as error:
            raise FamilyError(f"{path}: cannot load single file as {self.label}: {error}") from error
        return pipe

    def load_tokenizer(self, subfolder: str = "tokenizer") -> CLIPTokenizer:
        """The shared CLIP BPE tokenizer from configs/tokenizers/clip with this family's pad token."""
        from transformers import CLIPTokenizer

        if not (TOKENIZER_DIR / "vocab.json").is_file():
            raise FamilyError(f"{TOKENIZER_DIR}: tokenizer files missing; run `python -m cli.build_clip_tokenizer`")
        pad = self.tokenizer_pad_tokens.get(subfolder, "<|endoftext|>")
        tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(
            str(TOKENIZER_DIR), pad_token=pad, local_files_only=True
        )
        return tokenizer


def check_pickle_allowed(path: Path, allow_pickle: bool) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise PickleRefusedError(
            f"{path}: pickle checkpoints (.ckpt/.pt) can execute code when loaded and are refused; convert it to "
            "safetensors, or start Easel with --allow-pickle if you trust its source"
        )
