"""Apply a quantization method to a loaded model's components, with a cache where possible.

Reversible only with ``keep_original=True`` (tests, one-off jobs): the unquantized component is kept and
:meth:`QuantizedComponents.remove` puts it back exactly. Production (the execution setup) passes
``keep_original=False``, which is what saves memory: the original is dropped, ``remove()`` refuses, and undoing
means reloading the model (the manager's ``reload``). Quantization here happens after load, on the pipeline's
components; diffusers can also quantize at load time (``quantization_config`` with ``BitsAndBytesConfig``,
``TorchAoConfig``, ``QuantoConfig`` or ``PipelineQuantizationConfig``), which Easel does not use yet because its
model manager loads a pipeline once and applies the execution options (backend, memory, quantization) to it
afterwards. Quantized weights are cached in ``<cache>/quantized/<model-hash>-<method>/<component>/`` for
methods that serialise (optimum-quanto); for bitsandbytes and torchao quantizing on load is cheap (seconds) and
their tensors do not round-trip through safetensors outside the transformers/diffusers loaders, so they are not
cached.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.quantization.methods import Quanto, SizeReport, get_method, size_of

log = logging.getLogger(__name__)

DEFAULT_COMPONENTS: tuple[str, ...] = ("unet", "transformer", "text_encoder", "text_encoder_2")


@dataclass
class QuantizedComponents:
    """What was quantized on one pipeline, with sizes before/after, and the originals when kept."""

    pipe: Any
    method: str
    sizes: dict[str, tuple[SizeReport, SizeReport]] = field(default_factory=dict)
    originals: dict[str, torch.nn.Module] = field(default_factory=dict)

    def describe(self) -> str:
        return "; ".join(f"{name}: {before.mib:.1f} -> {after.describe()}"
                         for name, (before, after) in self.sizes.items())

    def remove(self) -> None:
        if not self.originals and self.sizes:
            raise RuntimeError("the unquantized components were dropped to save memory; reload the model instead")
        for name, module in self.originals.items():
            setattr(self.pipe, name, module)
        self.originals.clear()
        self.sizes.clear()


def quantize_components(loaded: Any, method_name: str, *, components: Sequence[str] = ("unet",),
                        keep_original: bool = True, cache_dir: Path | None = None) -> QuantizedComponents:
    method = get_method(method_name)
    method.require_available()
    pipe = loaded.pipe
    result = QuantizedComponents(pipe, method_name)
    model_hash = getattr(getattr(loaded, "info", None), "sha256", None)
    for name in components:
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        before = size_of(module)
        folder = (Path(cache_dir) / "quantized" / f"{str(model_hash)[:16]}-{method_name}" / name
                  if cache_dir is not None and model_hash else None)
        if isinstance(method, Quanto) and folder is not None and (folder / "quantization_map.json").exists():
            quantized = method.load(module, folder)
        else:
            quantized = method.quantize(module)
            if isinstance(method, Quanto) and folder is not None:
                method.save(quantized, folder)
        if keep_original:
            result.originals[name] = module
        setattr(pipe, name, quantized)
        result.sizes[name] = (before, size_of(quantized))
        log.info("quantized %s with %s: %s", name, method_name, result.sizes[name][1].describe())
    return result
