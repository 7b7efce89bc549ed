"""A1111's ``modules.sd_models`` for drop-in extensions: checkpoint lists and the loaded model, as views over
Easel's checkpoint catalog and model manager (:mod:`modules.extensions.a1111_models`).

``checkpoints_list``/``checkpoint_aliases`` are rebuilt on each read from the catalog. Loading goes through the
model manager (``reload_model_weights``); A1111's state-dict and ldm config helpers do not exist on a diffusers
core and raise a clear error.
"""

from __future__ import annotations

from typing import Any

from modules.extensions import compat
from modules.extensions.a1111_models import A1111CheckpointInfo, checkpoint_infos, current_model_view
from modules.extensions.incompatible import IncompatibleSurfaceError

CheckpointInfo = A1111CheckpointInfo


class _ModelData:
    """A1111's ``model_data``: ``sd_model`` is the loaded model (a view), loaded on first use if needed."""

    @property
    def sd_model(self) -> Any:
        return current_model_view()

    def get_sd_model(self) -> Any:
        model = current_model_view()
        if model is None:
            services = compat.facade()
            services.manager.ensure_loaded(services.settings.options.sd_model_checkpoint)
            model = current_model_view()
        return model

    def set_sd_model(self, value: Any, already_loaded: bool = False) -> None:
        """Easel's model manager owns the loaded model; extensions cannot swap it behind its back."""

    @property
    def loaded_sd_models(self) -> list[Any]:
        model = current_model_view()
        return [model] if model is not None else []


model_data = _ModelData()


def list_models() -> None:
    compat.facade().catalog.refresh()


def checkpoint_tiles(use_short: bool = False) -> list[str]:
    return [info.short_title if use_short else info.title for info in checkpoint_infos()]


def get_closet_checkpoint_match(search_string: str) -> A1111CheckpointInfo | None:
    entry = compat.facade().catalog.find(search_string) if search_string else None
    if entry is None and search_string:
        lowered = search_string.lower()
        matches = sorted((e for e in compat.facade().catalog.entries if lowered in e.title.lower()),
                         key=lambda e: len(e.title))
        entry = matches[0] if matches else None
    return A1111CheckpointInfo(entry) if entry is not None else None


def select_checkpoint() -> A1111CheckpointInfo | None:
    services = compat.facade()
    current = services.manager.current if services.manager is not None else None
    if current is not None:
        return A1111CheckpointInfo(current.info)
    wanted = services.settings.options.sd_model_checkpoint
    entry = services.catalog.find(wanted) if wanted else None
    entries = services.catalog.entries
    return A1111CheckpointInfo(entry or entries[0]) if (entry or entries) else None


def model_hash(filename: str) -> str:
    """A1111's legacy 8-digit hash (of a 64 KiB block at 1 MiB): computed the same way."""
    import hashlib

    try:
        with open(filename, "rb") as file:
            digest = hashlib.sha256()
            file.seek(0x100000)
            digest.update(file.read(0x10000))
            return digest.hexdigest()[0:8]
    except FileNotFoundError:
        return "NOFILE"


def reload_model_weights(sd_model: Any = None, info: Any = None, forced_reload: bool = False) -> Any:
    """Load ``info`` (a CheckpointInfo or title) or the configured checkpoint through the model manager."""
    services = compat.facade()
    target = getattr(info, "title", info) or services.settings.options.sd_model_checkpoint
    if forced_reload:
        services.manager.reload()
    else:
        services.manager.ensure_loaded(target)
    return current_model_view()


def load_model(checkpoint_info: Any = None, already_loaded_state_dict: Any = None) -> Any:
    return reload_model_weights(info=checkpoint_info)


def unload_model_weights(sd_model: Any = None, info: Any = None) -> None:
    compat.facade().manager.unload()


def send_model_to_cpu(m: Any) -> None:
    """Placement is the model manager's (offload strategies); nothing to do for an extension."""


def send_model_to_device(m: Any) -> None:
    """Placement is the model manager's (offload strategies); nothing to do for an extension."""


def send_model_to_trash(m: Any) -> None:
    """Placement is the model manager's; nothing to do for an extension."""


def read_state_dict(checkpoint_file: str, print_global_state: bool = False, map_location: str | None = None) -> Any:
    """A safetensors file's tensors (pickle checkpoints are refused, as Easel's loader refuses them)."""
    if not str(checkpoint_file).endswith(".safetensors"):
        raise ValueError(f"{checkpoint_file}: only .safetensors state dicts can be read")
    from safetensors.torch import load_file

    return load_file(checkpoint_file, device=map_location or "cpu")


def __getattr__(name: str) -> Any:
    if name == "checkpoints_list":
        return {info.title: info for info in checkpoint_infos()}
    if name == "checkpoint_aliases":
        aliases: dict[str, A1111CheckpointInfo] = {}
        for info in checkpoint_infos():
            for alias in info.ids:
                if alias:
                    aliases.setdefault(alias, info)
        return aliases
    if name in ("get_checkpoint_state_dict", "load_model_weights", "repair_config", "sd1_clip_weight",
                "get_state_dict_from_checkpoint", "apply_alpha_schedule_override"):
        raise IncompatibleSurfaceError(f"modules.sd_models.{name}", "A1111's ldm model loading internals",
                                       _owner())
    raise AttributeError(f"module 'modules.sd_models' has no attribute {name!r}")


def _owner() -> str | None:
    from modules.extensions.incompatible import guard

    return guard().importing_extension()
