"""One typed settings object: launch flags, environment and ``config.json`` merged once at start-up.

* :class:`CmdFlags` holds what is fixed for the life of the process (A1111/SD.Next flag names). Precedence:
  command line > environment (``EASEL_<NAME>``) > defaults. Nothing parses argv at import time.
* :class:`Options` holds what a user changes at run time (A1111 option keys, so ``/sdapi/v1/options`` clients
  work unchanged). It is stored in ``<data-dir>/config.json``, written atomically; a corrupt file is moved aside
  and reported, never silently lost. Unknown keys that clients send are kept (not dropped, not nulled).
* :class:`Settings` ties both to their files and is the object the composition root hands around.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modules.core.a1111_options import A1111_OPTION_DEFAULTS
from modules.core.atomic import atomic_write_json
from modules.core.errors import UserInputError
from modules.core.limits import (
    DEFAULT_CPU_WORKERS,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_MAX_JOB_IMAGES,
    DEFAULT_MAX_OUTPUT_PIXELS,
    DEFAULT_MAX_PROCESSOR_RES,
    DEFAULT_MAX_STEPS,
    Limits,
)
from modules.core.paths import REPO_ROOT, DataPaths, ModelPaths
from modules.core.validation import StrictInput

log = logging.getLogger(__name__)

LAUNCHER_ONLY_FLAGS = ("skip_install", "reinstall", "test", "use_directml")

# Names of the memory strategies and quantization methods the settings may select. They are spelled out here
# (core must not import the layers above it); tests/core checks them against the registries they name.
MemoryStrategyName = Literal["auto", "attention_slicing", "sdpa", "vae_slicing", "vae_tiling", "model_cpu_offload",
                             "sequential_offload", "group_offload", "token_merging", "vae_upcast"]
QuantizationName = Literal["none", "bnb-int8", "bnb-nf4", "bnb-fp4", "quanto-int8", "quanto-int4", "quanto-float8",
                           "torchao-int8"]


def _auto_memory_strategies() -> list[MemoryStrategyName]:
    return ["auto"]


class CmdFlags(BaseSettings):
    """Launch flags. Field names are the A1111/SD.Next flag names with dashes turned into underscores."""

    model_config = SettingsConfigDict(env_prefix="EASEL_", extra="forbid", frozen=True)

    port: int | None = Field(None, ge=1, le=65535, description="Port (7860; 7861 with --nowebui)")
    listen: bool = Field(False, description="Bind 0.0.0.0 instead of 127.0.0.1")
    data_dir: Path = Field(REPO_ROOT / "data", description="Config, outputs and queue state")
    models_dir: Path = Field(REPO_ROOT / "models", description="Checkpoints, VAE, LoRA, embeddings, upscalers")
    ckpt: str | None = Field(None, description="Checkpoint to load at start (title, name or path)")
    nowebui: bool = Field(False, description="Serve the API only, without the browser UI")
    use_cpu: bool = Field(False, description="Run on the CPU even if an accelerator is present")
    device_id: int | None = Field(None, ge=0, description="Index of the accelerator to use")
    precision: Literal["autocast", "full", "half", "bf16"] = Field("autocast", description="Compute precision")
    no_half: bool = Field(False, description="Keep the model in fp32")
    no_half_vae: bool = Field(False, description="Keep the VAE in fp32")
    lowvram: bool = Field(False, description="Sequential offload: least memory, slowest")
    medvram: bool = Field(False, description="Model CPU offload: less memory, a little slower")
    auth: str | None = Field(None, description="user:pass[,user:pass] for every route, UI and API")
    api_auth: str | None = Field(None, description="user:pass[,user:pass] for the API routes")
    allow_pickle: bool = Field(False, description="Allow loading pickle (.ckpt/.pt/.pth) weights")
    api_server_stop: bool = Field(False, description="Enable server-stop/-restart/-kill API routes")
    cors_allow_origins: str | None = Field(None, description="Comma-separated CORS origins")
    cors_allow_origins_regex: str | None = Field(None, description="CORS origin regex")
    allow_extension_install: bool = Field(False, description="Run extensions' install.py (explicit consent)")
    api_log: bool = Field(False, description="Log every API request")
    max_request_mb: int = Field(64, ge=1, description="Largest accepted request body, in MiB")
    max_image_pixels: int = Field(DEFAULT_MAX_IMAGE_PIXELS, ge=64 * 64,
                                  description="Largest uploaded image, in pixels (width x height)")
    max_output_pixels: int = Field(DEFAULT_MAX_OUTPUT_PIXELS, ge=64 * 64,
                                   description="Largest image a job may produce (hires, upscale), in pixels")
    max_processor_res: int = Field(DEFAULT_MAX_PROCESSOR_RES, ge=64,
                                   description="Largest ControlNet preprocessor resolution")
    max_job_images: int = Field(DEFAULT_MAX_JOB_IMAGES, ge=1,
                                description="Most images one job may generate (batches, script loops, tiles)")
    max_steps: int = Field(DEFAULT_MAX_STEPS, ge=1, le=10000, description="Most sampling steps of one pass")
    max_cpu_workers: int = Field(DEFAULT_CPU_WORKERS, ge=1, le=64,
                                 description="Request-thread CPU work (decoding, png-info, detect) run at once")
    workers: str | None = Field(None, pattern=r"^(auto|[1-9][0-9]{0,2})$",
                                description="Run jobs on N Ray worker processes on this machine, each with its own "
                                            "device ('auto': one per GPU, or one on a CPU-only machine)")
    ray_address: str | None = Field(None, pattern=r"^(auto|[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5})$",
                                    description="Join the Ray cluster at HOST:PORT (started with 'ray start --head') "
                                                "and run one worker per GPU on its nodes")
    skip_install: bool = Field(False, description="Launcher: skip the dependency check")
    reinstall: bool = Field(False, description="Launcher: reinstall requirements")
    test: bool = Field(False, description="Launcher: run the test suite")
    use_directml: bool = Field(False, description="Launcher: install torch-directml")

    @property
    def uses_cluster(self) -> bool:
        """True when jobs run on Ray workers (``--workers`` or ``--ray-address``) instead of in this process."""
        return bool(self.workers or self.ray_address)

    @property
    def host(self) -> str:
        return "0.0.0.0" if self.listen else "127.0.0.1"

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 7861 if self.nowebui else 7860


_FLAG_ALIASES = {"api_only": "nowebui"}


def build_arg_parser() -> argparse.ArgumentParser:
    """An argparse parser generated from :class:`CmdFlags`, so a flag is declared exactly once."""
    parser = argparse.ArgumentParser(prog="easel", description="Easel: a local diffusion web UI and REST API")
    for name, field in CmdFlags.model_fields.items():
        option = "--" + name.replace("_", "-")
        aliases = [("--" + alias.replace("_", "-")) for alias, target in _FLAG_ALIASES.items() if target == name]
        help_text = field.description or ""
        if field.annotation is bool:
            parser.add_argument(option, *aliases, dest=name, action="store_true", default=argparse.SUPPRESS,
                                help=help_text)
        else:
            parser.add_argument(option, *aliases, dest=name, default=argparse.SUPPRESS, help=help_text)
    return parser


def parse_cmd_flags(argv: Sequence[str] | None, environ: Mapping[str, str] | None = None) -> CmdFlags:
    """Parse ``argv`` (unknown flags are an error naming them) and merge the environment and defaults."""
    return parse_flags(argv, environ)[0]


ParserExtension = Callable[[argparse.ArgumentParser], None]
"""Adds flags to the parser before it parses (extensions' ``preload(parser)``)."""


def parse_flags(argv: Sequence[str] | None, environ: Mapping[str, str] | None = None,
                extend_parser: ParserExtension | None = None) -> tuple[CmdFlags, dict[str, object]]:
    """Easel's flags and the flags ``extend_parser`` declared (name -> value or its default), parsed together:
    a flag neither declares is an error naming it."""
    parser = build_arg_parser()
    own = {action.dest for action in parser._actions}
    if extend_parser is not None:
        extend_parser(parser)
    namespace, unknown = parser.parse_known_args(list(argv or []))
    if unknown:
        raise SystemExit(f"easel: unknown flag(s): {' '.join(unknown)} (see --help for the list)")
    given = vars(namespace)
    extension_flags = {name: given.pop(name) for name in list(given) if name not in own}
    if environ is not None:
        env_values = {
            name: environ[f"EASEL_{name.upper()}"]
            for name in CmdFlags.model_fields
            if f"EASEL_{name.upper()}" in environ and name not in given
        }
        given = {**env_values, **given}
        return CmdFlags.model_validate(given), extension_flags
    return CmdFlags(**given), extension_flags


class Options(StrictInput):
    """Run-time options with A1111 keys and defaults. ``section`` groups them in the UI's settings page."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    # Model
    sd_model_checkpoint: str | None = Field(None, json_schema_extra={"section": "Model"})
    sd_vae: str = Field("Automatic", json_schema_extra={"section": "Model"})
    CLIP_stop_at_last_layers: int = Field(1, ge=1, le=12, json_schema_extra={"section": "Model"})
    sd_checkpoint_cache: int = Field(0, ge=0, le=10, json_schema_extra={"section": "Model"})
    sd_checkpoints_limit: int = Field(1, ge=1, le=10, json_schema_extra={"section": "Model"})
    emphasis: Literal["Original", "No norm", "None", "Ignore"] = Field(
        "Original", json_schema_extra={"section": "Model"})
    # Sampling
    eta_noise_seed_delta: int = Field(0, ge=0, json_schema_extra={"section": "Sampling"})
    eta_ddim: float = Field(0.0, ge=0.0, le=1.0, json_schema_extra={"section": "Sampling"})
    eta_ancestral: float = Field(1.0, ge=0.0, le=1.0, json_schema_extra={"section": "Sampling"})
    randn_source: Literal["CPU", "GPU"] = Field("CPU", json_schema_extra={"section": "Sampling"})
    # Saving
    samples_save: bool = Field(True, json_schema_extra={"section": "Saving images"})
    samples_format: Literal["png", "jpg", "jpeg", "webp"] = Field("png", json_schema_extra={"section": "Saving images"})
    jpeg_quality: int = Field(80, ge=1, le=100, json_schema_extra={"section": "Saving images"})
    grid_save: bool = Field(True, json_schema_extra={"section": "Saving images"})
    grid_format: Literal["png", "jpg", "jpeg", "webp"] = Field("png", json_schema_extra={"section": "Saving images"})
    enable_pnginfo: bool = Field(True, json_schema_extra={"section": "Saving images"})
    save_to_dirs: bool = Field(True, json_schema_extra={"section": "Saving images"})
    directories_filename_pattern: str = Field("[date]", json_schema_extra={"section": "Saving images"})
    samples_filename_pattern: str = Field("[seed]-[prompt_spaces]", json_schema_extra={"section": "Saving images"})
    outdir_samples: str = Field("", json_schema_extra={"section": "Paths"})
    outdir_txt2img_samples: str = Field("", json_schema_extra={"section": "Paths"})
    outdir_img2img_samples: str = Field("", json_schema_extra={"section": "Paths"})
    outdir_extras_samples: str = Field("", json_schema_extra={"section": "Paths"})
    outdir_grids: str = Field("", json_schema_extra={"section": "Paths"})
    add_model_hash_to_info: bool = Field(True, json_schema_extra={"section": "Infotext"})
    add_model_name_to_info: bool = Field(True, json_schema_extra={"section": "Infotext"})
    add_vae_name_to_info: bool = Field(True, json_schema_extra={"section": "Infotext"})
    add_vae_hash_to_info: bool = Field(True, json_schema_extra={"section": "Infotext"})
    # Live previews
    live_previews_enable: bool = Field(True, json_schema_extra={"section": "Live previews"})
    show_progress_every_n_steps: int = Field(5, ge=-1, le=100, json_schema_extra={"section": "Live previews"})
    live_preview_content: Literal["Prompt", "Negative prompt", "Combined"] = Field(
        "Prompt", json_schema_extra={"section": "Live previews"})
    # Post-processing
    face_restoration_model: str | None = Field(
        None, title="Face restoration model (for Restore faces; unset: the first installed)",
        json_schema_extra={"section": "Postprocessing"})
    code_former_weight: float = Field(
        0.5, ge=0.0, le=1.0, title="CodeFormer weight (0 = strongest restoration, 1 = weakest)",
        json_schema_extra={"section": "Postprocessing"})
    upscaler_for_img2img: str | None = Field(None, json_schema_extra={"section": "Postprocessing"})
    img2img_color_correction: bool = Field(False, json_schema_extra={"section": "Postprocessing"})
    # Execution (read by modules.backends.setup when a model loads; names mirror the registries they select from)
    backend: Literal["auto", "torch", "onnxruntime", "openvino", "tensorrt"] = Field(
        "auto", title="Execution backend (auto: PyTorch, or OpenVINO / ONNX Runtime for large models on a CPU)",
        json_schema_extra={"section": "Execution"})
    execution_precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", title="Execution precision (auto: the launch --precision, then the best the hardware runs natively)",
        json_schema_extra={"section": "Execution"})
    execution_shape_policy: str = Field(
        "dynamic", pattern=r"^(dynamic|static-b[1-9]\d*-[1-9]\d*x[1-9]\d*)$",
        title="Exported graph shapes: dynamic, or static-b<batch>-<width>x<height> (e.g. static-b2-512x512)",
        json_schema_extra={"section": "Execution"})
    openvino_device: str = Field(
        "CPU", pattern=r"^(CPU|GPU|NPU|AUTO|HETERO|MULTI)([.:][A-Za-z0-9.,:]+)?$",
        title="OpenVINO device (CPU, GPU, GPU.1, NPU, AUTO, HETERO:GPU,CPU ...)",
        json_schema_extra={"section": "Execution"})
    openvino_weight_compression: Literal["none", "int8", "int8_sym", "int4_sym", "int4_asym"] = Field(
        "none", title="OpenVINO NNCF weight compression", json_schema_extra={"section": "Execution"})
    torch_compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        "off", title="torch.compile mode (a GPU option: on a CPU the first call is slow and later ones no faster)",
        json_schema_extra={"section": "Execution"})
    cross_attention_optimization: str = Field("Automatic", json_schema_extra={"section": "Execution"})
    # Memory and quantization (strategy and method names: modules.memory.STRATEGIES, modules.quantization METHODS)
    memory_strategies: list[MemoryStrategyName] = Field(
        default_factory=_auto_memory_strategies,
        title="Memory strategies (auto: chosen from --lowvram/--medvram and free device memory; others are added)",
        json_schema_extra={"section": "Memory"})
    token_merging_ratio: float = Field(
        0.0, ge=0.0, le=0.9, title="Token merging ratio (0 = off)", json_schema_extra={"section": "Memory"})
    quantization: QuantizationName = Field(
        "none", title="Weight quantization of the UNet/transformer (applied when a model loads)",
        json_schema_extra={"section": "Memory"})
    # Extensions and UI
    disabled_extensions: list[str] = Field(default_factory=list, json_schema_extra={"section": "Extensions"})
    quicksettings_list: list[str] = Field(
        default_factory=lambda: ["sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers"],
        json_schema_extra={"section": "User interface"})
    localization: str = Field(
        "None", title="Localization (a localizations/*.json file of Easel or an extension; applies on page reload)",
        json_schema_extra={"section": "User interface"})
    # Jobs
    job_retention_count: int = Field(200, ge=1, json_schema_extra={"section": "Jobs"})
    worker_fairness_seconds: float = Field(
        30.0, ge=0, le=86400, json_schema_extra={"section": "Jobs"},
        description="With several workers: an idle worker prefers a job for the model it has loaded unless the "
                    "oldest queued job has waited longer than this")

    @model_validator(mode="before")
    @classmethod
    def _a1111_defaults(cls, data: object) -> object:
        """Every A1111 v1.10 key exists, with A1111's default unless given (typed fields keep their own)."""
        if not isinstance(data, dict):
            return data
        missing = {key: copy.deepcopy(value) for key, value in A1111_OPTION_DEFAULTS.items()
                   if key not in data and key not in cls.model_fields}
        return {**missing, **data} if missing else data

    @field_validator("samples_format", "grid_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("memory_strategies", mode="before")
    @classmethod
    def _strategies_as_list(cls, value: object) -> object:
        """A single name (``"auto"``, ``"vae_tiling"``) is accepted for a one-item list, as config files write it."""
        return [value] if isinstance(value, str) else value

    @classmethod
    def sections(cls) -> dict[str, list[str]]:
        """Option keys grouped by their section, in declaration order (drives the UI settings page)."""
        grouped: dict[str, list[str]] = {}
        for name, field in cls.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            grouped.setdefault(str(extra.get("section", "Other")), []).append(name)
        return grouped


def validate_option_changes(current: Options, changes: Mapping[str, object]) -> Options:
    """Return a new :class:`Options` with ``changes`` applied, or raise a 422 naming the bad key.

    ``None`` for an unknown key is refused rather than stored (clients that send nulls must not poison the
    config); ``None`` for a known key that does not accept it is refused by pydantic with the key's name.
    """
    merged = current.model_dump()
    for key, value in changes.items():
        if key not in Options.model_fields and value is None and A1111_OPTION_DEFAULTS.get(key, 0) is not None:
            raise UserInputError(key, "unknown option; null is not stored")
        if key not in Options.model_fields and key in A1111_OPTION_DEFAULTS:
            _check_a1111_type(key, value)
        merged[key] = value
    try:
        return Options.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or "options"
        raise UserInputError(field, first.get("msg", "invalid value")) from exc


def _check_a1111_type(key: str, value: object) -> None:
    """An A1111-only option keeps the type of A1111's default (a bool stays a bool, a number a number...)."""
    default = A1111_OPTION_DEFAULTS[key]
    if default is None:
        return
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int | float):
        ok, expected = isinstance(value, int | float) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
    elif isinstance(default, list):
        ok, expected = isinstance(value, list), "a list"
    else:
        ok, expected = isinstance(value, type(default)), type(default).__name__
    if not ok:
        raise UserInputError(key, f"expected {expected} (A1111's default is {default!r}), got {value!r}")


class Settings:
    """Flags + options + where they live. Options changes are saved atomically under a lock."""

    def __init__(self, flags: CmdFlags, options: Options, load_warnings: list[str] | None = None,
                 extension_flags: Mapping[str, object] | None = None) -> None:
        self.flags = flags
        self._options = options
        self._lock = threading.Lock()
        self.data_paths = DataPaths(Path(flags.data_dir).expanduser().resolve())
        self.model_paths = ModelPaths(Path(flags.models_dir).expanduser().resolve())
        self.load_warnings: list[str] = list(load_warnings or [])
        # Layers above core (the extension options registry) plug in here: checks see the changes before they are
        # validated (and may raise a UserInputError naming the key); listeners see (before, after) once stored.
        self.option_checks: list[Callable[[Mapping[str, object]], None]] = []
        self.option_listeners: list[Callable[[Mapping[str, object], Mapping[str, object]], None]] = []
        # Flags that extensions declare in their preload.py (A1111's ``preload(parser)``), parsed with Easel's.
        self.extension_flags: dict[str, object] = dict(extension_flags or {})

    @property
    def options(self) -> Options:
        return self._options

    @property
    def limits(self) -> Limits:
        """The resource limits of the launch flags."""
        return Limits.from_flags(self.flags)

    @classmethod
    def load(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
             extend_parser: ParserExtension | None = None) -> Settings:
        flags, extension_flags = parse_flags(argv, environ, extend_parser)
        paths = DataPaths(Path(flags.data_dir).expanduser().resolve())
        options, warnings = load_options(paths.config_file)
        if flags.ckpt:
            options = options.model_copy(update={"sd_model_checkpoint": flags.ckpt})
        return cls(flags, options, warnings, extension_flags)

    def update_options(self, changes: Mapping[str, object], *, save: bool = True) -> Options:
        """Validate and apply ``changes``; persist them atomically when ``save``."""
        for check in self.option_checks:
            check(changes)
        with self._lock:
            before = self._options
            updated = validate_option_changes(before, changes)
            self._options = updated
            if save:
                self.save()
        old, new = before.model_dump(), updated.model_dump()
        for listener in list(self.option_listeners):
            try:
                listener(old, new)
            except Exception:  # one failing service must not make a saved change look failed
                log.exception("applying the new options failed in %r", listener)
        return updated

    def save(self) -> None:
        atomic_write_json(self.data_paths.config_file, self._options.model_dump(mode="json"))


def load_options(config_file: Path) -> tuple[Options, list[str]]:
    """Read ``config.json``. Keys with invalid values are left out (each reported by name, the file is not
    rewritten, so the value is still there to fix), the valid ones kept, as A1111 does. A file that is not a JSON
    object is moved aside (never deleted) and defaults are used."""
    if not config_file.exists():
        return Options(), []
    try:
        raw = json.loads(config_file.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("config.json must hold a JSON object")
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        aside = config_file.with_name(f"config.json.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        config_file.replace(aside)
        message = f"{config_file} could not be read ({exc.__class__.__name__}: {exc}); kept as {aside.name}"
        log.warning(message)
        return Options(), [message]
    cleaned = {key: value for key, value in raw.items() if not (key not in Options.model_fields and value is None)}
    warnings: list[str] = []
    while True:
        try:
            return Options.model_validate(cleaned), warnings
        except ValidationError as exc:
            bad = {str(error["loc"][0]): str(error.get("msg", "invalid value")) for error in exc.errors()
                   if error.get("loc")}
            if not bad or not bad.keys() & cleaned.keys():  # an error no single key explains: start from defaults
                message = f"{config_file}: invalid options ({exc.error_count()} errors); using defaults"
                log.warning(message)
                return Options(), [*warnings, message]
            for key, reason in bad.items():
                if key in cleaned:
                    message = (f"{config_file}: option {key!r} ignored: {reason} (value {cleaned.pop(key)!r:.80}); "
                               "the other options are kept")
                    log.warning(message)
                    warnings.append(message)
