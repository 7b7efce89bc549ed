"""Wiring: apply the configured backend, memory policy and quantization to every model the manager loads.

Settings read (typed fields of :class:`modules.core.settings.Options`, section "Execution" and "Memory"):
``backend`` (auto / torch / onnxruntime / openvino / tensorrt; ``auto`` is resolved per model by
:func:`modules.backends.auto.choose_backend`), ``execution_precision`` (auto follows the launch ``--precision``),
``execution_shape_policy``, ``openvino_device``, ``openvino_weight_compression``, ``torch_compile``,
``memory_strategies`` ("auto" expands to :func:`modules.memory.policy_for_device`), ``token_merging_ratio``
(0 = off) and ``quantization``. The backend that actually ran the UNet goes into the infotext
(``Backend: openvino``) when it is not PyTorch.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

from modules.backends.auto import AutoChoice, choose_backend, installed_backends, probe_cpu, unet_parameter_count
from modules.backends.base import GraphUNet, ShapePolicy, active_backend, restore_components
from modules.backends.registry import get_backend
from modules.core.settings import Options, Settings
from modules.devices.base import normalize_precision, system_memory
from modules.devices.select import Device

log = logging.getLogger(__name__)


@dataclass
class AppliedExecution:
    backend: str
    choice: AutoChoice | None = None  # what was asked for (auto resolved); ``backend`` is what runs
    memory: Any = None  # modules.memory.AppliedPolicy
    quantization: Any = None  # modules.quantization.apply.QuantizedComponents
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

    def on_model_loaded(self, loaded: Any) -> None:
        pipe = loaded.pipe
        if pipe in self.applied:  # a model coming back from the RAM cache keeps what it had
            return
        from modules.memory import apply_strategies, policy_for_device

        options = self.options
        device = self._device()
        record = AppliedExecution(backend="torch")
        self.applied[pipe] = record
        if options.quantization != "none":
            from modules.quantization.apply import quantize_components

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
        choice = self.resolve_backend(loaded, quantized=record.quantization is not None)
        record.choice = choice
        if choice.backend != "torch":  # exported graphs replace the UNet: hooks on it would do nothing
            names = [name for name in names if name not in ("sdpa", "attention_slicing", "token_merging")]
        try:
            record.memory = apply_strategies(pipe, names, device.device, token_merging_ratio=ratio or 0.5)
        except Exception as exc:
            record.errors.append(f"memory strategies {names}: {exc}")
            log.exception("memory strategies %s failed", names)
        self.prepare_backend(loaded, choice, record)

    def prepare_backend(self, loaded: Any, choice: AutoChoice, record: AppliedExecution) -> None:
        options = self.options
        if choice.backend == "torch" and options.torch_compile == "off":
            if options.backend == "auto":
                log.info("backend auto: torch (%s)", choice.reason)
            return  # plain diffusers PyTorch: nothing to wrap
        kwargs: dict[str, Any] = {}
        if choice.backend == "openvino":
            kwargs["device"] = options.openvino_device
            if options.openvino_weight_compression != "none":
                kwargs["weight_compression"] = options.openvino_weight_compression
        if choice.backend == "torch":
            kwargs["compile_mode"] = options.torch_compile
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
        if isinstance(unet, GraphUNet) and unet.torch_fallback:
            # auto may run a call on PyTorch (ControlNet, LoRA): name what ran, read when the infotext is written
            run.extra_generation_params["Backend"] = BackendUsed(unet)
        else:
            name = active_backend(pipe)
            if name != "torch":
                run.extra_generation_params["Backend"] = name
        record = self.applied.get(pipe)
        if record is not None and record.quantization is not None and record.quantization.sizes:
            run.extra_generation_params["Quantization"] = record.quantization.method


class BackendUsed:
    """Infotext value computed per image: the backend that ran the UNet's latest call (None, i.e. left out, for
    PyTorch, as A1111 writes no backend)."""

    def __init__(self, unet: GraphUNet) -> None:
        self.unet = unet

    def __call__(self, index: int) -> str | None:
        name = str(self.unet.last_backend)
        return None if name == "torch" else name

