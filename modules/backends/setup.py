"""Wiring: apply the configured backend, memory policy and quantization to every model the manager loads.

Settings read (typed fields of :class:`modules.core.settings.Options`, section "Execution" and "Memory"):
``backend`` (auto / torch / onnxruntime / openvino / tensorrt; ``auto`` is resolved per model: calibrated routes
for a large UNet on a CPU, :mod:`modules.backends.adaptive`, else :func:`modules.backends.auto.choose_backend`),
``execution_precision`` (auto follows the launch ``--precision``),
``execution_shape_policy``, ``openvino_device``, ``openvino_weight_compression``, ``torch_compile``,
``memory_strategies`` ("auto" expands to :func:`modules.memory.policy_for_device`), ``token_merging_ratio``
(0 = off) and ``quantization`` (applied while the model loads, through :meth:`ExecutionSetup.load_components`,
which the composition root registers as the manager's loading hook; see :mod:`modules.quantization.apply`).
The backend that actually ran the UNet goes into the infotext
(``Backend: openvino``; under auto with its precision, ``Backend: openvino bf16``, and ``VAE backend`` where the VAE
ran elsewhere) when it is not plain PyTorch fp32.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from modules.backends.adaptive import (
    AdaptiveExecution,
    AdaptiveUNet,
    AdaptiveVae,
    CalibrationStore,
    cpu_signature,
    install_adaptive,
)
from modules.backends.auto import (
    AutoChoice,
    AutoPlan,
    choose_backend,
    installed_backends,
    plan_cpu_routes,
    probe_cpu,
    unet_parameter_count,
)
from modules.backends.base import GraphUNet, ShapePolicy, active_backend, export_key, restore_components
from modules.backends.registry import get_backend
from modules.core.settings import Options, Settings
from modules.devices.base import normalize_precision, system_memory
from modules.devices.select import Device
from modules.models.catalog import CheckpointInfo
from modules.quantization.apply import QuantizedComponents, load_quantized_components, quantize_components

log = logging.getLogger(__name__)


@dataclass
class AppliedExecution:
    backend: str
    choice: AutoChoice | None = None  # what was asked for (auto resolved); ``backend`` is what runs
    memory: Any = None  # modules.memory.AppliedPolicy
    quantization: QuantizedComponents | None = None
    adaptive: AdaptiveExecution | None = None  # backend auto on a CPU: routed UNet/VAE, background export
    errors: list[str] = field(default_factory=list)

    def remove(self, pipe: Any) -> None:
        if self.memory is not None:
            self.memory.remove()
        if self.quantization is not None and self.quantization.originals:
            self.quantization.remove()
        restore_components(pipe)


class ModelWithPipe(Protocol):
    @property
    def pipe(self) -> Any: ...


class RunRecord(Protocol):
    """What the infotext preprocessor reads and writes on a run."""

    sd_model: ModelWithPipe | None
    extra_generation_params: dict[str, Any]


class ExecutionSetup:
    """Applies the configured execution to each model the manager loads (the composition root registers
    :meth:`on_model_loaded` and :meth:`infotext_preprocessor`); holds what was applied to which pipeline (weakly:
    a retired pipeline takes its record with it)."""

    def __init__(self, settings: Settings, device: Device | None) -> None:
        self.settings = settings
        self.device = device
        self.applied: weakref.WeakKeyDictionary[Any, AppliedExecution] = weakref.WeakKeyDictionary()
        # what load_components did for a checkpoint path, until on_model_loaded attaches it to the pipeline
        self._quantized_at_load: dict[str, QuantizedComponents | str] = {}
        self._calibration: CalibrationStore | None = None

    @property
    def calibration(self) -> CalibrationStore:
        """Measured route times, shared by every model (keyed inside by CPU, model, component and shape)."""
        if self._calibration is None:
            self._calibration = CalibrationStore(self.settings.data_paths.cache_dir / "calibration.json")
        return self._calibration

    @property
    def options(self) -> Options:
        return self.settings.options

    def _device(self) -> Device:
        if self.device is None:
            raise RuntimeError("no device: ExecutionSetup was built without one")
        return self.device

    def requested_precision(self) -> str:
        """``execution_precision``, where ``auto`` defers to the launch flags (``--no-half``, ``--precision``)."""
        precision = self.options.execution_precision
        if precision != "auto":
            return precision
        flags = self.settings.flags
        return "fp32" if flags.no_half else normalize_precision(flags.precision)

    def resolve_backend(self, loaded: Any, quantized: bool) -> AutoChoice:
        """The configured backend, or what ``auto`` picks for this model on this device."""
        precision = self.requested_precision()
        name = self.options.backend
        if name != "auto":
            return AutoChoice(name, precision, "set in the options")
        return choose_backend(device_type=self._device().device.type,
                              unet_params=unet_parameter_count(loaded.pipe), cpu=probe_cpu(),
                              installed=installed_backends(), precision=precision, quantized=quantized,
                              free_memory=system_memory().free)

    def load_components(self, info: CheckpointInfo) -> dict[str, Any]:
        """The manager's loading hook: the denoiser of a diffusers folder loaded quantized by diffusers (or read
        from the quantization cache) when the ``quantization`` option is set; nothing otherwise. A failure is
        recorded for :meth:`on_model_loaded` and the model loads unquantized."""
        key = str(info.path)
        self._quantized_at_load.pop(key, None)
        method = self.options.quantization
        if method == "none":
            return {}
        device = self._device()
        try:
            components, applied = load_quantized_components(
                info.path, method, dtype=device.dtype, device=device.device, model_hash=info.sha256,
                cache_dir=self.settings.data_paths.cache_dir)
        except Exception as exc:
            self._quantized_at_load[key] = f"quantization {method}: {exc}"
            log.exception("quantization %s failed; loading unquantized", method)
            return {}
        if components:
            self._quantized_at_load[key] = applied
        return components

    def on_model_loaded(self, loaded: Any) -> None:
        pipe = loaded.pipe
        if pipe in self.applied:  # a model coming back from the RAM cache keeps what it had
            return
        from modules.memory import apply_strategies, policy_for_device

        options = self.options
        device = self._device()
        record = AppliedExecution(backend="torch")
        self.applied[pipe] = record
        at_load = self._quantized_at_load.pop(str(loaded.info.path), None)
        if isinstance(at_load, str):
            record.errors.append(at_load)
        elif at_load is not None:
            at_load.pipe = pipe
            record.quantization = at_load
        elif options.quantization != "none":  # what diffusers could not load quantized: by hand, after load
            try:
                record.quantization = quantize_components(loaded, options.quantization, keep_original=False,
                                                          cache_dir=self.settings.data_paths.cache_dir)
            except Exception as exc:
                record.errors.append(f"quantization {options.quantization}: {exc}")
                log.exception("quantization %s failed; running unquantized", options.quantization)
        names: list[str] = []
        for name in options.memory_strategies:
            expanded = policy_for_device(device, self.settings.flags) if name == "auto" else [name]
            names.extend(item for item in expanded if item not in names)
        ratio = options.token_merging_ratio
        if ratio > 0 and "token_merging" not in names:
            names.append("token_merging")
        plan = self.auto_plan(loaded, quantized=record.quantization is not None,
                              token_merging="token_merging" in names)
        choice = (AutoChoice("auto", self.requested_precision(), plan.reason) if plan is not None
                  else self.resolve_backend(loaded, quantized=record.quantization is not None))
        record.choice = choice
        if choice.backend not in ("torch", "auto"):  # exported graphs replace the UNet: hooks on it would do nothing
            names = [name for name in names if name not in ("sdpa", "attention_slicing", "token_merging")]
        try:
            record.memory = apply_strategies(pipe, names, device.device, token_merging_ratio=ratio or 0.5)
        except Exception as exc:
            record.errors.append(f"memory strategies {names}: {exc}")
            log.exception("memory strategies %s failed", names)
        if plan is not None:
            self.install_adaptive(loaded, plan, record)
            return
        self.prepare_backend(loaded, choice, record)

    def auto_plan(self, loaded: Any, *, quantized: bool, token_merging: bool) -> AutoPlan | None:
        """The calibrated routes of ``backend: auto`` for a large UNet on a CPU; None elsewhere."""
        options = self.options
        if options.backend != "auto" or options.torch_compile != "off" or self._device().device.type != "cpu":
            return None
        unet = getattr(loaded.pipe, "unet", None)
        if unet is None or getattr(unet, "dtype", None) != torch.float32:
            return None
        # token merging patches the PyTorch UNet's blocks: an export would trace the patch, so only torch routes
        return plan_cpu_routes(unet_params=unet_parameter_count(loaded.pipe), cpu=probe_cpu(),
                               installed=installed_backends(), precision=self.requested_precision(),
                               quantized=quantized, free_memory=system_memory().free, allow_export=not token_merging)

    def install_adaptive(self, loaded: Any, plan: AutoPlan, record: AppliedExecution) -> None:
        options = self.options
        cache_dir = self.settings.data_paths.cache_dir
        shape_policy = ShapePolicy.parse(options.execution_shape_policy)
        build_export = None
        if plan.export is not None:
            backend_name, precision = plan.export
            backend: Any = get_backend(backend_name)

            def build_export(unet: Any, vae: Any) -> tuple[Any, Any]:
                kwargs = {"device": options.openvino_device} if backend_name == "openvino" else {}
                return backend.build_graphs(loaded, unet, vae, cache_dir=cache_dir, precision=precision,
                                            shape_policy=shape_policy, **kwargs)

        cpu = probe_cpu()
        model_key = "|".join((cpu_signature(cpu.flags, torch.get_num_threads()),
                              export_key(loaded, shape_policy, "auto")))
        try:
            record.adaptive = install_adaptive(loaded, store=self.calibration, model_key=model_key, bf16=plan.bf16,
                                               export=plan.export, build_export=build_export)
            record.backend = "auto"
        except Exception as exc:
            record.errors.append(f"backend auto: {exc}")
            log.exception("backend auto could not set up its routes; running on torch")
            restore_components(loaded.pipe)
            return
        log.info("backend auto: %s", plan.reason)

    def status_text(self, model: ModelWithPipe | None) -> str | None:
        """Progress text for a job running on ``model``: which route runs, and a background export while it
        lasts (None where ``backend: auto`` set up no routes)."""
        record = self.applied.get(model.pipe) if model is not None else None
        if record is None or record.adaptive is None:
            return None
        return record.adaptive.status()

    def prepare_backend(self, loaded: Any, choice: AutoChoice, record: AppliedExecution) -> None:
        options = self.options
        if choice.backend == "torch" and options.torch_compile == "off" and not _casts_unet(loaded, choice.precision):
            if options.backend == "auto":
                log.info("backend auto: torch (%s)", choice.reason)
            return  # plain diffusers PyTorch: nothing to wrap
        kwargs: dict[str, Any] = {}
        if choice.backend == "openvino":
            kwargs["device"] = options.openvino_device
            if options.openvino_weight_compression != "none":
                kwargs["weight_compression"] = options.openvino_weight_compression
        if choice.backend == "torch":
            kwargs["compile_mode"] = None if options.torch_compile == "off" else options.torch_compile
        backend = get_backend(choice.backend)
        started = time.perf_counter()
        try:
            backend.prepare(loaded, cache_dir=self.settings.data_paths.cache_dir,
                            precision=choice.precision, shape_policy=ShapePolicy.parse(options.execution_shape_policy),
                            **kwargs)
            record.backend = choice.backend
        except Exception as exc:
            record.errors.append(f"backend {choice.backend}: {exc}")
            log.exception("execution backend %s failed; running on torch", choice.backend)
            return
        if options.backend == "auto":
            unet = getattr(loaded.pipe, "unet", None)
            if isinstance(unet, GraphUNet):
                unet.torch_fallback = True
            log.info("backend auto: %s, precision %s, ready in %.1fs (%s)", choice.backend, choice.precision,
                     time.perf_counter() - started, choice.reason)

    def infotext_preprocessor(self, run: RunRecord) -> None:
        model = run.sd_model
        pipe = model.pipe if model is not None else None
        if pipe is None:
            return
        unet = getattr(pipe, "unet", None)
        if isinstance(unet, AdaptiveUNet):
            vae = getattr(pipe, "vae", None)
            unet.begin_job()
            run.extra_generation_params["Backend"] = RouteUsed(unet)
            if isinstance(vae, AdaptiveVae):
                vae.begin_job()
                run.extra_generation_params["VAE backend"] = RouteUsed(vae, same_as=unet)
        elif isinstance(unet, GraphUNet) and unet.torch_fallback:
            # auto may run a call on PyTorch (ControlNet, LoRA): name what ran, read when the infotext is written
            run.extra_generation_params["Backend"] = BackendUsed(unet)
        else:
            name = active_backend(pipe)
            if name != "torch":
                run.extra_generation_params["Backend"] = name
        record = self.applied.get(pipe)
        if record is not None and record.quantization is not None and record.quantization.sizes:
            run.extra_generation_params["Quantization"] = record.quantization.method


def _casts_unet(loaded: Any, precision: str) -> bool:
    """An explicit execution precision (option or launch flag) other than the UNet's loaded dtype: the torch
    backend then runs a converted copy (``auto`` leaves the loaded dtype to the device's choice)."""
    from modules.backends.torch_backend import resolve_torch_dtype

    unet = getattr(loaded.pipe, "unet", None)
    dtype, device = getattr(unet, "dtype", None), getattr(unet, "device", None)
    if precision == "auto" or not isinstance(dtype, torch.dtype) or not isinstance(device, torch.device):
        return False
    return resolve_torch_dtype(precision, device, dtype) != dtype


class BackendUsed:
    """Infotext value computed per image: the backend that ran the UNet's latest call (None, i.e. left out, for
    PyTorch, as A1111 writes no backend)."""

    def __init__(self, unet: GraphUNet) -> None:
        self.unet = unet

    def __call__(self, index: int) -> str | None:
        name = str(self.unet.last_backend)
        return None if name == "torch" else name



class RouteUsed:
    """Infotext value per image under ``backend: auto``: the route that ran most of the component's calls, with
    its precision (``openvino bf16``, ``torch bf16``); None (left out) for plain PyTorch fp32, as A1111 writes
    no backend. ``same_as``: left out too when it names the same route as that component (the VAE as the UNet)."""

    def __init__(self, component: AdaptiveUNet | AdaptiveVae, same_as: AdaptiveUNet | None = None) -> None:
        self.component = component
        self.same_as = same_as

    def __call__(self, index: int) -> str | None:
        route = self.component.main_route()
        if route.name == "torch:fp32":
            return None
        if self.same_as is not None and self.same_as.main_route().name == route.name:
            return None
        return route.label
