"""A1111's model and sampler shapes as views over Easel's catalog, model manager and sampler registry.

Extensions read ``shared.sd_model.sd_checkpoint_info.title``, ``p.sd_model.is_sdxl``, ``sd_models.
checkpoints_list``, ``sd_samplers.samplers`` ... These classes answer those reads from the live services; none
holds state of its own (a view is rebuilt on each read), and nothing here loads a model unless a caller asks
(``reload_model_weights``), which goes through the model manager like every other load.
"""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from typing import Any

from modules.extensions import compat


class A1111CheckpointInfo:
    """A1111's ``sd_models.CheckpointInfo`` over one catalog entry (``modules.models.catalog.CheckpointInfo``)."""

    def __init__(self, entry: Any) -> None:
        self.entry = entry
        self.filename = str(entry.path)
        self.name = entry.name
        self.name_for_extra = Path(entry.model_name).name
        self.model_name = entry.model_name
        self.is_safetensors = entry.format == "safetensors"
        self.metadata: dict[str, Any] = {}

    @property
    def sha256(self) -> str | None:
        return self.entry.sha256

    @property
    def shorthash(self) -> str | None:
        return self.entry.shorthash

    @property
    def hash(self) -> str | None:
        """A1111's legacy 8-digit hash; Easel keeps only the SHA-256, so this is its first 8 digits."""
        return self.entry.sha256[:8] if self.entry.sha256 else None

    @property
    def title(self) -> str:
        return str(self.entry.title)

    @property
    def short_title(self) -> str:
        return f"{self.name_for_extra} [{self.shorthash}]" if self.shorthash else self.name_for_extra

    @property
    def ids(self) -> list[str]:
        ids = [self.model_name, self.name, self.title, self.filename]
        if self.shorthash:
            ids += [self.shorthash, self.entry.sha256, f"{self.name} [{self.shorthash}]"]
        return ids

    def calculate_shorthash(self) -> str | None:
        services = compat.facade()
        services.catalog.ensure_hash(self.entry)
        return self.shorthash

    def __repr__(self) -> str:
        return f"<CheckpointInfo {self.title}>"


_LOADED_MODEL_FIELDS = frozenset({"info", "pipe", "family", "default_size", "load_seconds", "hash"})


class SdModelView:
    """``shared.sd_model`` / ``p.sd_model``: the loaded diffusers pipeline plus A1111's model attributes.

    Attribute reads that are not A1111 model attributes go to the pipeline (``sd_model.unet``, ``.vae``...).
    """

    def __init__(self, loaded: Any) -> None:
        object.__setattr__(self, "_loaded", loaded)

    @property
    def loaded_model(self) -> Any:
        return self._loaded

    @property
    def sd_checkpoint_info(self) -> A1111CheckpointInfo:
        return A1111CheckpointInfo(self._loaded.info)

    @property
    def sd_model_hash(self) -> str | None:
        return self._loaded.hash

    @property
    def sd_model_checkpoint(self) -> str:
        return str(self._loaded.info.path)

    @property
    def is_sdxl(self) -> bool:
        return str(self._loaded.family.name).startswith(("sdxl", "playground"))

    @property
    def is_sdxl_inpaint(self) -> bool:
        return str(self._loaded.family.name) == "sdxl-inpaint"

    @property
    def is_sd2(self) -> bool:
        return str(self._loaded.family.name).startswith("sd2")

    @property
    def is_sd1(self) -> bool:
        return str(self._loaded.family.name).startswith("sd15")

    is_sd3 = False
    is_ssd = False

    @property
    def latent_channels(self) -> int:
        return int(self._loaded.pipe.vae.config.latent_channels)

    def __getattr__(self, name: str) -> Any:
        if name in _LOADED_MODEL_FIELDS:  # core code handed a view reads the LoadedModel as before
            return getattr(self._loaded, name)
        return getattr(self._loaded.pipe, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._loaded.pipe, name, value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SdModelView) and other._loaded is self._loaded

    def __hash__(self) -> int:
        return id(self._loaded)

    def __repr__(self) -> str:
        return f"<sd_model {self._loaded.info.title}>"


def current_model_view() -> SdModelView | None:
    manager = compat.facade().manager
    current = manager.current if manager is not None else None
    return SdModelView(current) if current is not None else None


def model_view(loaded: Any) -> Any:
    """A view of ``loaded`` (a ``LoadedModel``); anything else (None, a view already) is returned as is."""
    if loaded is None or isinstance(loaded, SdModelView) or not hasattr(loaded, "pipe"):
        return loaded
    return SdModelView(loaded)


def checkpoint_infos() -> list[A1111CheckpointInfo]:
    return [A1111CheckpointInfo(entry) for entry in compat.facade().catalog.entries]


# -- samplers ------------------------------------------------------------------------------------------------
SamplerData = namedtuple("SamplerData", ["name", "constructor", "aliases", "options"])
"""A1111's ``sd_samplers_common.SamplerData``; ``constructor`` is None: Easel builds diffusers schedulers."""

Scheduler = namedtuple("Scheduler", ["name", "label", "function", "default_rho", "need_inner_model", "aliases"],
                       defaults=[None, -1, False, None])


def sampler_data() -> list[Any]:
    registry = compat.facade().samplers
    return [SamplerData(spec.name, None, list(spec.aliases), dict(spec.overrides)) for spec in registry.samplers]


def scheduler_data() -> list[Any]:
    registry = compat.facade().samplers
    return [Scheduler(schedule.name, schedule.label, None, -1, False, list(schedule.aliases))
            for schedule in registry.schedules]
