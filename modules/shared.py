"""A1111's ``modules.shared`` for drop-in extensions: ``opts``, ``state``, ``cmd_opts``, ``sd_model`` ...

Every name here is a stateless view onto the bound services (see :mod:`modules.extensions.compat`); nothing is
parsed or loaded at import time. Easel's core never imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from modules.extensions import compat

log = logging.getLogger(__name__)


class OptionInfo:
    """A1111's ``OptionInfo``: an extension setting's default, label and UI component (``on_ui_settings``)."""

    def __init__(self, default: Any = None, label: str = "", component: Any = None,
                 component_args: Any = None, onchange: Callable[[], None] | None = None,
                 section: Any = None, refresh: Any = None, comment_before: str = "", comment_after: str = "",
                 infotext: str | None = None, restrict_api: bool = False, category_id: str | None = None) -> None:
        self.default = default
        self.label = label
        self.component = component
        self.component_args = component_args
        self.onchange = onchange
        self.section = section
        self.refresh = refresh
        self.comment_before = comment_before
        self.comment_after = comment_after
        self.infotext = infotext
        self.restrict_api = restrict_api
        self.category_id = category_id
        self.do_not_save = False

    def link(self, label: str, url: str) -> OptionInfo:
        self.comment_before += f"[<a href='{url}' target='_blank'>{label}</a>]"
        return self

    def js(self, label: str, js_func: str) -> OptionInfo:
        return self

    def info(self, info: str) -> OptionInfo:
        self.comment_after += f"<span class='info'>({info})</span>"
        return self

    def html(self, html: str) -> OptionInfo:
        self.comment_after += html
        return self

    def needs_restart(self) -> OptionInfo:
        return self

    def needs_reload_ui(self) -> OptionInfo:
        return self


class OptionHTML(OptionInfo):
    def __init__(self, text: str) -> None:
        super().__init__(str(text).strip(), label="")
        self.do_not_save = True


def options_section(section_identifier: Any, options_dict: dict[str, OptionInfo]) -> dict[str, OptionInfo]:
    for value in options_dict.values():
        value.section = section_identifier
    return options_dict


def _settings() -> Any:
    return compat.bound().settings


class _OptionsData(MutableMapping[str, Any]):
    """``opts.data``: the options as a dict; writes go through validation like ``opts.<key> = value``."""

    def __getitem__(self, key: str) -> Any:
        data = _settings().options.model_dump()
        if key not in data:
            raise KeyError(key)
        return data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        opts.set(key, value)

    def __delitem__(self, key: str) -> None:
        raise KeyError(f"options cannot be deleted ({key})")

    def __iter__(self) -> Iterator[str]:
        return iter(_settings().options.model_dump())

    def __len__(self) -> int:
        return len(_settings().options.model_dump())


class _Opts:
    """``shared.opts``: attribute access onto ``services.settings.options``."""

    @property
    def data(self) -> _OptionsData:
        return _OptionsData()

    @property
    def data_labels(self) -> dict[str, OptionInfo]:
        return compat.binding().option_infos

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        options = _settings().options
        try:
            return getattr(options, name)
        except AttributeError:
            info = compat.binding().option_infos.get(name)
            if info is not None:
                return info.default
            raise AttributeError(f"shared.opts has no option {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        before = getattr(self, key, None)
        _settings().update_options({key: value}, save=False)
        if run_callbacks and before != value:
            for callback in compat.binding().onchange.get(key, []):
                try:
                    callback()
                except Exception:
                    log.exception("onchange callback of option %s failed", key)
        return True

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            return default

    def save(self, filename: str | None = None) -> None:
        _settings().save()

    def add_option(self, key: str, info: OptionInfo) -> None:
        compat.binding().option_infos[key] = info
        options = _settings().options
        if key not in options.model_dump() and info.default is not None and not info.do_not_save:
            _settings().update_options({key: info.default}, save=False)

    def onchange(self, key: str, func: Callable[[], None], call: bool = True) -> None:
        compat.binding().onchange.setdefault(key, []).append(func)
        if call:
            func()

    def same_type(self, x: Any, y: Any) -> bool:
        return x is None or y is None or isinstance(x, type(y))

    def dumpjson(self) -> str:
        import json

        return json.dumps(_settings().options.model_dump(mode="json"))


class _State:
    """``shared.state``: a read view of the job queue's progress, plus ``interrupt()``/``skip()``."""

    _WRITABLE = ("job", "job_no", "job_count", "job_timestamp", "sampling_step", "sampling_steps", "textinfo",
                 "current_image", "current_latent", "id_live_preview", "processing_has_refined_job_count",
                 "time_start", "server_start", "server_command")

    def _snapshot(self) -> Any:
        try:
            queue = getattr(compat.bound(), "queue", None)
        except RuntimeError:
            return None
        return queue.progress() if queue is not None else None

    def __getattr__(self, name: str) -> Any:
        overrides = compat.binding().state_overrides
        snapshot = self._snapshot()
        mapping = {"interrupted": "interrupted", "skipped": "skipped", "sampling_step": "step",
                   "sampling_steps": "total_steps", "job_no": "batch_no", "job_count": "batch_count",
                   "textinfo": "textinfo", "job": "job_id"}
        if name in mapping:
            if name in overrides and name not in ("interrupted", "skipped"):
                return overrides[name]
            default = False if name in ("interrupted", "skipped") else (0 if name != "textinfo" else None)
            return getattr(snapshot, mapping[name], default) if snapshot is not None else default
        if name in self._WRITABLE:
            return overrides.get(name)
        if name == "stopping_generation":
            return False
        raise AttributeError(f"shared.state has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        compat.binding().state_overrides[name] = value

    def interrupt(self) -> None:
        compat.bound().queue.interrupt()

    def skip(self) -> None:
        compat.bound().queue.skip()

    def nextjob(self) -> None:
        overrides = compat.binding().state_overrides
        overrides["job_no"] = int(overrides.get("job_no") or 0) + 1

    def begin(self, job: str = "(unknown)") -> None:
        compat.binding().state_overrides.clear()

    def end(self) -> None:
        compat.binding().state_overrides.clear()

    def set_current_image(self) -> None:
        pass

    def assign_current_image(self, image: Any) -> None:
        pass

    def dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("interrupted", "skipped", "job", "job_count", "job_no",
                                                       "sampling_step", "sampling_steps")}


class _CmdOpts:
    """``shared.cmd_opts``: the launch flags, plus A1111 flag names mapped onto Easel's folders.

    A flag Easel does not have reads as None (A1111 extensions probe many flags), logged once at debug level.
    """

    def __getattr__(self, name: str) -> Any:
        settings = _settings()
        flags = settings.flags
        if name in type(flags).model_fields:
            return getattr(flags, name)
        paths = settings.model_paths
        folders = {"lora_dir": paths.lora, "embeddings_dir": paths.embeddings, "ckpt_dir": paths.stable_diffusion,
                   "vae_dir": paths.vae, "esrgan_models_path": paths.esrgan, "controlnet_dir": paths.controlnet,
                   "hypernetwork_dir": paths.root / "hypernetworks", "lyco_dir_backcompat": paths.lora}
        if name in folders:
            return str(folders[name])
        if name == "api":
            return True
        if name in ("data_dir",):
            return str(settings.data_paths.root)
        log.debug("shared.cmd_opts.%s is not an Easel flag; reading None", name)
        return None


opts = _Opts()
state = _State()
cmd_opts = _CmdOpts()


class _Upscaler:
    def __init__(self, name: str) -> None:
        self.name = name
        self.scale = 4
        self.data_path = None
        self.scaler = self

    def upscale(self, img: Any, scale: float, selected_model: Any = None) -> Any:
        from modules.images import upscale_with

        return upscale_with(self.name, img, scale)


def _upscaler_names() -> list[str]:
    services = compat.binding().services
    registry = services.upscalers if services is not None else None
    names = ["None", "Lanczos", "Nearest"]
    if registry is not None:
        names.extend(name for name in registry.names() if name not in names)
    return names


def __getattr__(name: str) -> Any:
    services = compat.bound()
    if name == "sd_model":
        current = services.manager.current if services.manager is not None else None
        return current.pipe if current is not None else None
    if name == "device":
        return services.device.device if services.device is not None else "cpu"
    if name == "prompt_styles":
        styles = services.styles
        return styles.store if styles is not None else None
    if name == "sd_upscalers":
        return [_Upscaler(upscaler) for upscaler in _upscaler_names()]
    if name in ("models_path",):
        return str(services.settings.model_paths.root)
    if name in ("data_path",):
        return str(services.settings.data_paths.root)
    if name in ("script_path",):
        from modules.core.paths import REPO_ROOT

        return str(REPO_ROOT)
    if name == "extensions_dir":
        from modules.core.paths import REPO_ROOT

        return str(Path(REPO_ROOT) / "extensions")
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")
