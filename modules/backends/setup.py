"""Wiring: apply the configured backend, memory policy and quantization to every model the manager loads.

Settings read (``Options`` keeps unknown keys, so these work before they get typed fields):
``backend`` (torch / onnxruntime / openvino / tensorrt), ``execution_precision`` (auto / fp32 / fp16 / bf16;
default: the launch ``--precision``), ``execution_shape_policy`` (``dynamic`` or ``static-b2-512x512``),
``openvino_device`` (CPU / GPU / NPU / AUTO), ``torch_compile`` (off / default / reduce-overhead /
max-autotune), ``memory_strategies`` ("auto" or a list of names from :data:`modules.memory.STRATEGIES`),
``token_merging_ratio`` (0 = off), ``quantization`` (none or a name from
:data:`modules.quantization.methods.METHODS`). The backend's name goes into the infotext (``Backend: openvino``)
through a processor prompt preprocessor when it is not torch.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

from modules.backends.base import ShapePolicy, active_backend, restore_components
from modules.backends.registry import get_backend

log = logging.getLogger(__name__)


@dataclass
class AppliedExecution:
    backend: str
    memory: Any = None  # modules.memory.AppliedPolicy
    quantization: Any = None  # modules.quantization.apply.QuantizedComponents
    errors: list[str] = field(default_factory=list)

    def remove(self, pipe: Any) -> None:
        if self.memory is not None:
            self.memory.remove()
        if self.quantization is not None and self.quantization.originals:
            self.quantization.remove()
        restore_components(pipe)


class ExecutionSetup:
    """Holds what was applied to which pipeline (weakly: a retired pipeline takes its record with it)."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.applied: weakref.WeakKeyDictionary[Any, AppliedExecution] = weakref.WeakKeyDictionary()

    def option(self, name: str, default: Any) -> Any:
        value = getattr(self.services.settings.options, name, None)
        return default if value is None else value

    def on_model_loaded(self, loaded: Any) -> None:
        pipe = loaded.pipe
        if pipe in self.applied:  # a model coming back from the RAM cache keeps what it had
            return
        from modules.memory import apply_strategies, policy_for_device

        flags = self.services.settings.flags
        device = self.services.device
        record = AppliedExecution(backend="torch")
        self.applied[pipe] = record
        quantization = str(self.option("quantization", "none"))
        if quantization not in ("", "none", "None"):
            from modules.quantization.apply import quantize_components

            try:
                record.quantization = quantize_components(loaded, quantization, keep_original=False,
                                                          cache_dir=self.services.settings.data_paths.cache_dir)
            except Exception as exc:
                record.errors.append(f"quantization {quantization}: {exc}")
                log.exception("quantization %s failed; running unquantized", quantization)
        names = self.option("memory_strategies", "auto")
        if names == "auto":
            names = policy_for_device(device, flags)
        ratio = float(self.option("token_merging_ratio", 0.0))
        if ratio > 0 and "token_merging" not in names:
            names = [*names, "token_merging"]
        backend_name = str(self.option("backend", "torch"))
        if backend_name != "torch":  # exported graphs replace the UNet: hooks on it would do nothing
            names = [name for name in names if name not in ("sdpa", "attention_slicing", "token_merging")]
        try:
            record.memory = apply_strategies(pipe, names, device.device, token_merging_ratio=ratio or 0.5)
        except Exception as exc:
            record.errors.append(f"memory strategies {names}: {exc}")
            log.exception("memory strategies %s failed", names)
        self.prepare_backend(loaded, backend_name, record)

    def prepare_backend(self, loaded: Any, backend_name: str, record: AppliedExecution) -> None:
        flags = self.services.settings.flags
        compile_mode = str(self.option("torch_compile", "off"))
        if backend_name == "torch" and compile_mode in ("off", "", "None"):
            return  # plain diffusers PyTorch: nothing to wrap
        precision = str(self.option("execution_precision", "fp32" if flags.no_half else flags.precision))
        from modules.devices.base import normalize_precision

        kwargs: dict[str, Any] = {}
        if backend_name == "openvino":
            kwargs["device"] = str(self.option("openvino_device", "CPU"))
        if backend_name == "torch":
            kwargs["compile_mode"] = compile_mode
        backend = get_backend(backend_name)
        try:
            backend.prepare(loaded, cache_dir=self.services.settings.data_paths.cache_dir,
                            precision=normalize_precision(precision),
                            shape_policy=ShapePolicy.parse(str(self.option("execution_shape_policy", "dynamic"))),
                            **kwargs)
            record.backend = backend_name
        except Exception as exc:
            record.errors.append(f"backend {backend_name}: {exc}")
            log.exception("execution backend %s failed; running on torch", backend_name)

    def infotext_preprocessor(self, run: Any) -> None:
        model = getattr(run, "sd_model", None)
        pipe = getattr(model, "pipe", None)
        if pipe is None:
            return
        name = active_backend(pipe)
        if name != "torch":
            run.extra_generation_params["Backend"] = name
        record = self.applied.get(pipe)
        if record is not None and record.quantization is not None and record.quantization.sizes:
            run.extra_generation_params["Quantization"] = record.quantization.method


def install(services: Any) -> ExecutionSetup:
    """Register the model-loaded hook and the infotext preprocessor (called once from webui's warm-up)."""
    setup = ExecutionSetup(services)
    services.manager.on_model_loaded(setup.on_model_loaded)
    generation = getattr(services, "generation", None)
    if generation is not None:
        generation.processor.prompt_preprocessors.append(setup.infotext_preprocessor)
    services.extensions["execution"] = setup
    return setup
