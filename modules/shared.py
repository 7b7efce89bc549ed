"""A1111's ``modules.shared`` for drop-in extensions: ``opts``, ``state``, ``cmd_opts``, ``sd_model`` ...

Every name here is a stateless view onto the bound services (see :mod:`modules.extensions.compat`); nothing is
parsed or loaded at import time. Easel's core never imports this module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from modules.core import cancellation
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


# Output folder options that A1111 fills with a folder of its own install and Easel leaves empty (meaning its own
# layout under the data dir's outputs): extensions that browse the outputs read these, so through ``shared.opts``
# an empty one reads as the folder Easel really writes to.
_OUTDIR_KINDS = {"outdir_txt2img_samples": "txt2img", "outdir_img2img_samples": "img2img",
                 "outdir_extras_samples": "extras", "outdir_txt2img_grids": "txt2img-grids",
                 "outdir_img2img_grids": "img2img-grids"}


def _effective(key: str, value: Any) -> Any:
    if value == "" and key in _OUTDIR_KINDS:
        from modules.processing.image_store import KIND_DIRS

        return str(_settings().data_paths.outputs / KIND_DIRS[_OUTDIR_KINDS[key]])
    return value


class _OptionsData(MutableMapping[str, Any]):
    """``opts.data``: the options as a dict; writes go through validation like ``opts.<key> = value``."""

    def __getitem__(self, key: str) -> Any:
        data = _settings().options.model_dump()
        if key not in data:
            raise KeyError(key)
        return _effective(key, data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        opts.set(key, value)

    def __delitem__(self, key: str) -> None:
        raise KeyError(f"options cannot be deleted ({key})")

    def __iter__(self) -> Iterator[str]:
        return iter(_settings().options.model_dump())

    def __len__(self) -> int:
        return len(_settings().options.model_dump())


class _Opts:
    """``shared.opts``: attribute access onto ``services.settings.options``; extension options registered with
    ``add_option`` live in the same settings (see :mod:`modules.extensions.options`)."""

    @property
    def data(self) -> _OptionsData:
        return _OptionsData()

    @property
    def data_labels(self) -> dict[str, OptionInfo]:
        return dict(compat.options().infos())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        options = _settings().options
        try:
            return _effective(name, getattr(options, name))
        except AttributeError:
            info = compat.options().info(name)
            if info is not None:
                return info.default
            raise AttributeError(f"shared.opts has no option {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def __contains__(self, key: str) -> bool:
        return key in _settings().options.model_dump() or compat.options().info(key) is not None

    def set(self, key: str, value: Any, is_api: bool = False, run_callbacks: bool = True) -> bool:
        """Store ``value`` (checked like an API write); the option's ``onchange`` callbacks run when it changed.
        With ``is_api``, an option registered with ``restrict_api=True`` is left unchanged and False returned."""
        registry = compat.options()
        if is_api and registry.api_ignored({key: value}, _settings().options.model_dump()):
            return False
        registry.check({key: value}, is_api=is_api)
        _settings().update_options({key: value}, save=False)
        return True

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            return default

    def get_default(self, key: str) -> Any:
        """The registered default of ``key`` (None for an unknown key), as A1111's ``opts.get_default``."""
        return compat.options().default(key)

    def save(self, filename: str | None = None) -> None:
        _settings().save()

    def load(self, filename: str | None = None) -> None:
        """A1111 re-reads config.json here; Easel's settings are already the live copy."""

    def add_option(self, key: str, info: OptionInfo) -> None:
        compat.options().register(key, info)

    def onchange(self, key: str, func: Callable[[], None], call: bool = True) -> None:
        compat.options().add_onchange(key, func)
        if call:
            func()

    def same_type(self, x: Any, y: Any) -> bool:
        return x is None or y is None or isinstance(x, type(y))

    def cast_value(self, key: str, value: Any) -> Any:
        """A1111's ``cast_value``: ``value`` converted to the type of ``key``'s default."""
        default = self.get_default(key)
        if value is None or default is None:
            return value
        if isinstance(default, bool) and isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes", "on")
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            return value

    def reorder(self) -> None:
        """A1111 sorts ``data_labels`` by section; Easel's registry keeps sections already grouped."""

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
        if name == "interrupted" or name == "stopping_generation":
            # A1111 scripts poll this between units of their loops: a v2 cancel and a server stop must read as an
            # interrupt too, or a script's loop goes on after its job was cancelled.
            return cancellation.stop_requested() or bool(
                snapshot is not None and (snapshot.interrupted or snapshot.cancelling))
        if name in mapping:
            if name in overrides and name not in ("interrupted", "skipped"):
                return overrides[name]
            default = False if name in ("interrupted", "skipped") else (0 if name != "textinfo" else None)
            return getattr(snapshot, mapping[name], default) if snapshot is not None else default
        if name in self._WRITABLE:
            return overrides.get(name)
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


# A1111 flags extensions read that Easel has no flag for, with A1111's defaults (facts of its command line).
_A1111_FLAG_DEFAULTS: dict[str, Any] = {
    "share": False, "ngrok": None, "xformers": False, "force_enable_xformers": False, "opt_sdp_attention": False,
    "opt_split_attention": False, "disable_safe_unpickle": False, "freeze_settings": False,
    "hide_ui_dir_config": False, "enable_insecure_extension_access": False, "gradio_debug": False,
    "gradio_auth": None, "gradio_queue": True, "no_gradio_queue": False, "theme": None, "autolaunch": False,
    "disable_console_progressbars": False, "disable_all_extensions": False, "disable_extra_extensions": False,
    "do_not_download_clip": False, "skip_version_check": True, "skip_python_version_check": True,
    "skip_torch_cuda_test": False, "skip_prepare_environment": False, "no_download_sd_model": True,
    "upcast_sampling": False, "always_batch_cond_uncond": False, "localizations_dir": None,
    "tls_keyfile": None, "tls_certfile": None, "server_name": None, "subpath": None, "add_stop_route": False,
    "timeout_keep_alive": 30, "disable_tls_verify": False, "enable_console_prompts": False,
    "vae_path": None, "disable_nan_check": False, "api_log": False, "ui_debug_mode": False, "profile": False,
}


class _CmdOpts:
    """``shared.cmd_opts``: the launch flags, flags extensions declare in ``preload.py``, and A1111 flag names
    mapped onto Easel's folders or given A1111's defaults.

    A flag nobody declares reads as None (A1111 extensions probe many flags), logged once at debug level.
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        settings = _settings()
        flags = settings.flags
        if name in type(flags).model_fields:
            return getattr(flags, name)
        extension_flags = getattr(settings, "extension_flags", {})
        if name in extension_flags:
            return extension_flags[name]
        paths = settings.model_paths
        data = settings.data_paths
        folders = {"lora_dir": paths.lora, "embeddings_dir": paths.embeddings, "ckpt_dir": paths.stable_diffusion,
                   "vae_dir": paths.vae, "esrgan_models_path": paths.esrgan, "controlnet_dir": paths.controlnet,
                   "hypernetwork_dir": paths.root / "hypernetworks", "lyco_dir_backcompat": paths.lora,
                   "codeformer_models_path": paths.root / "Codeformer", "gfpgan_models_path": paths.root / "GFPGAN",
                   "ui_settings_file": data.config_file, "ui_config_file": data.root / "ui-config.json",
                   "styles_file": data.styles_file, "data_dir": data.root, "models_dir": paths.root,
                   "textual_inversion_templates_dir": paths.root.parent / "textual_inversion_templates"}
        if name in folders:
            return str(folders[name])
        if name == "ckpt":
            return flags.ckpt
        if name == "api":
            return True
        if name in _A1111_FLAG_DEFAULTS:
            return _A1111_FLAG_DEFAULTS[name]
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


class _TotalProgress:
    """``shared.total_tqdm``: A1111's console progress bar for a whole job; Easel reports progress per job."""

    def update(self) -> None:
        pass

    def updateTotal(self, new_total: int) -> None:
        pass

    def clear(self) -> None:
        pass


total_tqdm = _TotalProgress()
hypernetworks: dict[str, str] = {}
loaded_hypernetworks: list[Any] = []
xformers_available = False
parallel_processing_allowed = True
demo: Any = None
tab_names: list[str] = []
settings_components: dict[str, Any] = {}
hide_dirs = {"visible": True}
restricted_opts = {"samples_filename_pattern", "directories_filename_pattern", "outdir_samples",
                   "outdir_txt2img_samples", "outdir_img2img_samples", "outdir_extras_samples", "outdir_grids",
                   "outdir_txt2img_grids", "outdir_save", "outdir_init_images"}
latent_upscale_default_mode = "Latent"
latent_upscale_modes = {"Latent": {"mode": "bilinear", "antialias": False},
                        "Latent (nearest)": {"mode": "nearest", "antialias": False}}


def natural_sort_key(s: str, regex: Any = None) -> list[Any]:
    import re

    pattern = regex or re.compile("([0-9]+)")
    return [int(text) if text.isdigit() else text.lower() for text in pattern.split(s)]


def listfiles(dirname: str) -> list[str]:
    import os

    names = [name for name in sorted(os.listdir(dirname), key=natural_sort_key) if not name.startswith(".")]
    return [os.path.join(dirname, name) for name in names if os.path.isfile(os.path.join(dirname, name))]


def walk_files(path: str, allowed_extensions: Any = None) -> Iterator[str]:
    import os

    if not os.path.exists(path):
        return
    allowed = {ext.lower() for ext in allowed_extensions} if allowed_extensions is not None else None
    for root, _, files in os.walk(path, followlinks=True):
        for filename in sorted(files, key=natural_sort_key):
            if allowed is not None and os.path.splitext(filename)[1].lower() not in allowed:
                continue
            yield os.path.join(root, filename)


def html_path(filename: str) -> str:
    from modules.core.paths import REPO_ROOT

    return str(Path(REPO_ROOT) / "html" / filename)


def html(filename: str) -> str:
    path = Path(html_path(filename))
    return path.read_text(encoding="utf8") if path.is_file() else ""


def reload_gradio_theme(theme_name: str | None = None) -> None:
    """A1111 swaps the Gradio theme here; Easel's theme is fixed by its UI."""


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    services = compat.bound()
    if name == "sd_model":
        from modules.extensions.a1111_models import current_model_view

        return current_model_view()
    if name == "device":
        return services.device.device if services.device is not None else "cpu"
    if name in ("weight_load_location",):
        return None
    if name == "face_restorers":
        faces = getattr(services, "faces", None)
        return list(faces.list()) if faces is not None and hasattr(faces, "list") else []
    if name == "prompt_styles":
        styles = services.styles
        return styles.store if styles is not None else None
    if name == "sd_upscalers":
        return [_Upscaler(upscaler) for upscaler in _upscaler_names()]
    if name in ("models_path",):
        return str(services.settings.model_paths.root)
    if name in ("data_path",):
        return str(services.settings.data_paths.root)
    if name in ("config_filename",):
        return str(services.settings.data_paths.config_file)
    if name in ("styles_filename",):
        return [str(services.settings.data_paths.styles_file)]
    if name in ("script_path",):
        from modules.core.paths import REPO_ROOT

        return str(REPO_ROOT)
    if name == "extensions_dir":
        from modules.extensions.a1111_paths import extensions_dir

        return extensions_dir()
    if name == "cmd_opts":
        return cmd_opts
    raise AttributeError(f"module 'modules.shared' has no attribute {name!r}")
