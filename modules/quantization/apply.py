"""Quantize a model's denoiser through diffusers' load-time quantizer, with a cache; by hand only as a fallback.

**The diffusers path.** For a diffusers folder, a component is built by its model class's
``from_pretrained(folder, subfolder=name, quantization_config=...)`` with the method's diffusers config
(``BitsAndBytesConfig``, ``QuantoConfig``, ``TorchAoConfig``): diffusers' quantizer replaces the layers before
the weights are read and quantizes each weight as it loads, so the component carries diffusers' ``hf_quantizer``
and ``config.quantization_config``. The execution setup does this *at load time*
(:func:`load_quantized_components`, called through the model manager's loading hook): the quantized component is
handed to the pipeline's ``from_pretrained``, so the unquantized weights are never loaded. That is what
``PipelineQuantizationConfig(quant_mapping={name: config})`` does inside diffusers; Easel builds the component
itself so that it can come from the cache.

**The cache.** Methods whose quantized weights diffusers saves as safetensors (optimum-quanto, bitsandbytes) are
written once with the component's ``save_pretrained`` to ``<cache>/quantized/<model hash>-<method>-<dtype>/<name>/``
(``config.json`` holding the ``quantization_config``, and the quantized ``diffusion_pytorch_model.safetensors``);
the next load of the same model with the same method reads that folder through diffusers' pre-quantized loader
instead of quantizing again. torchao is not cached (see :class:`modules.quantization.methods.TorchAoInt8`).

**By hand, only where diffusers has no path:** a single-file checkpoint (there is no component folder to load
from, and diffusers 0.42's single-file model loader does not quantize: with ``QuantoConfig`` it leaves weights
on the meta device and fails, with ``TorchAoConfig`` it returns plain weights, as a test pins down),
bitsandbytes on a CPU device (diffusers' bitsandbytes quantizer refuses to run without a GPU), and a method chosen
after start-up whose library diffusers did not see at its import (start-up keeps bitsandbytes and torchao out of
that probe unless the option uses them, :mod:`modules.core.lazy_imports`). There :func:`quantize_components`
quantizes a copy of the loaded component with the method's hand-written ``quantize`` and says why in
:attr:`QuantizedComponents.routes`.

**Reversibility.** Load-time quantization is not reversible: the unquantized weights were never loaded, so
:meth:`QuantizedComponents.remove` refuses and undoing means reloading the model (the manager's ``reload``).
:func:`quantize_components` on an already loaded model can keep the original (``keep_original=True``, for tests
and one-off jobs), and then ``remove()`` puts it back exactly; with ``keep_original=False`` the original is
dropped and ``remove()`` refuses as above.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from modules.core.errors import UnsupportedError
from modules.quantization.methods import QuantizationMethod, SizeReport, get_method, size_of

log = logging.getLogger(__name__)

# The denoiser is what the ``quantization`` option quantizes (a UNet, or a DiT's transformer).
DENOISERS: tuple[str, ...] = ("unet", "transformer")

ROUTE_DIFFUSERS = "diffusers"
ROUTE_CACHE = "diffusers cache"
ROUTE_BY_HAND = "by hand"


@dataclass
class QuantizedComponents:
    """What was quantized on one pipeline: sizes before/after, the route each component took, and the
    originals when kept."""

    pipe: Any
    method: str
    sizes: dict[str, tuple[SizeReport, SizeReport]] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)  # name -> ROUTE_DIFFUSERS / ROUTE_CACHE / "by hand: why"
    originals: dict[str, torch.nn.Module] = field(default_factory=dict)

    def describe(self) -> str:
        return "; ".join(f"{name} ({self.routes.get(name, '?')}): {before.mib:.1f} -> {after.describe()}"
                         for name, (before, after) in self.sizes.items())

    def remove(self) -> None:
        if not self.originals and self.sizes:
            raise RuntimeError("the unquantized components were dropped or never loaded; reload the model instead")
        for name, module in self.originals.items():
            setattr(self.pipe, name, module)
        self.originals.clear()
        self.sizes.clear()
        self.routes.clear()


def cache_folder(cache_dir: Path | None, model_hash: str | None, method: str, dtype: torch.dtype,
                 name: str) -> Path | None:
    """Where the quantized ``name`` of this model, method and compute dtype is cached (None: no cache)."""
    if cache_dir is None or not model_hash:
        return None
    dtype_name = str(dtype).removeprefix("torch.")
    return Path(cache_dir) / "quantized" / f"{model_hash[:16]}-{method}-{dtype_name}" / name


def _diffusers_class(folder: Path, name: str) -> type[Any] | None:
    """The diffusers model class of ``folder``'s component ``name`` (None: not a diffusers model component)."""
    index_file = folder / "model_index.json"
    if not (folder / name / "config.json").is_file() or not index_file.is_file():
        return None
    entry = json.loads(index_file.read_text(encoding="utf-8")).get(name)
    if not isinstance(entry, list) or len(entry) != 2 or entry[0] != "diffusers":
        return None
    import diffusers

    found = getattr(diffusers, str(entry[1]), None)
    return found if isinstance(found, type) else None


def _unquantized_size(model_class: type[Any], folder: Path, name: str, dtype: torch.dtype) -> SizeReport:
    """The size the component would have unquantized at ``dtype``, from its config alone (meta tensors)."""
    config = model_class.load_config(str(folder), subfolder=name, local_files_only=True)
    with torch.device("meta"):
        skeleton = model_class.from_config(config)
    total = sum(tensor.numel() * (dtype.itemsize if tensor.is_floating_point() else tensor.element_size())
                for tensor in [*skeleton.parameters(), *skeleton.buffers()])
    return SizeReport(total, 0)


def _save_cache(module: Any, folder: Path) -> None:
    """``save_pretrained`` into a temporary sibling, then rename: a crash never leaves half a cache, and of two
    processes saving at once the first rename wins (a non-empty folder is not replaced)."""
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        module.save_pretrained(str(partial), safe_serialization=True)
        os.replace(partial, folder)
    except Exception:  # the quantized module is fine; only the next load will quantize again
        log.warning("could not cache the quantized component in %s", folder, exc_info=True)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def load_quantized(model_class: type[Any], folder: Path, name: str, method: QuantizationMethod, *,
                   dtype: torch.dtype, device: torch.device, cache: Path | None) -> tuple[Any, str]:
    """Component ``name`` of the diffusers folder loaded quantized by diffusers, on ``device``; read from
    ``cache`` when it holds it, else quantized while loading and saved there (cacheable methods)."""
    refusal = method.diffusers_refusal(device)
    if refusal is not None:
        raise UnsupportedError(f"quantization {method.name!r} cannot load through diffusers: {refusal}")
    kwargs: dict[str, Any] = {"torch_dtype": dtype, "local_files_only": True, **method.load_kwargs(device)}
    module: Any = None
    if cache is not None and (cache / "config.json").is_file():
        try:
            module, route = model_class.from_pretrained(str(cache), **kwargs), ROUTE_CACHE
        except Exception:  # unreadable (an older library, a damaged file): quantize again and replace it
            log.warning("the quantization cache %s is unreadable; quantizing again", cache, exc_info=True)
            shutil.rmtree(cache, ignore_errors=True)
    if module is None:
        module = model_class.from_pretrained(str(folder), subfolder=name,
                                             quantization_config=method.diffusers_config(dtype), **kwargs)
        route = ROUTE_DIFFUSERS
        if cache is not None and method.cacheable:
            _save_cache(module, cache)
    if "device_map" not in kwargs:
        module.to(device)
    return module.eval(), route


def load_quantized_components(folder: Path, method_name: str, *, dtype: torch.dtype, device: torch.device,
                              model_hash: str | None = None, cache_dir: Path | None = None,
                              components: Sequence[str] = DENOISERS) -> tuple[dict[str, Any], QuantizedComponents]:
    """Load time: the quantized components of a diffusers folder, to pass to the pipeline's ``from_pretrained``
    (``pipe`` of the returned record is filled in by the caller). Nothing for a single file, or for a method
    diffusers refuses on ``device``: those are quantized by hand after load (:func:`quantize_components`)."""
    method = get_method(method_name)
    method.require_available()
    result = QuantizedComponents(None, method_name)
    loaded: dict[str, Any] = {}
    folder = Path(folder)
    if not folder.is_dir() or method.diffusers_refusal(device) is not None:
        return loaded, result
    for name in components:
        model_class = _diffusers_class(folder, name)
        if model_class is None:
            continue
        module, route = load_quantized(model_class, folder, name, method, dtype=dtype, device=device,
                                       cache=cache_folder(cache_dir, model_hash, method_name, dtype, name))
        loaded[name] = module
        result.sizes[name] = (_unquantized_size(model_class, folder, name, dtype), size_of(module))
        result.routes[name] = route
        log.info("quantized %s with %s at load (%s): %s", name, method_name, route, result.sizes[name][1].describe())
    return loaded, result


def _by_hand_reason(folder: Path, name: str, method: QuantizationMethod, device: torch.device) -> str | None:
    """Why component ``name`` cannot be reloaded quantized through diffusers (None: it can)."""
    if not folder.is_dir():
        return "single-file checkpoint"
    if _diffusers_class(folder, name) is None:
        return f"no diffusers component folder {name!r}"
    return method.diffusers_refusal(device)


def quantize_components(loaded: Any, method_name: str, *, components: Sequence[str] = DENOISERS,
                        keep_original: bool = True, cache_dir: Path | None = None) -> QuantizedComponents:
    """After load: replace the components of ``loaded.pipe`` with quantized ones, reloaded through diffusers
    from the model's folder (and cache) where possible, else quantized by hand from the loaded weights."""
    method = get_method(method_name)
    method.require_available()
    pipe = loaded.pipe
    result = QuantizedComponents(pipe, method_name)
    folder = Path(loaded.info.path)
    for name in components:
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        before = size_of(module)
        parameter = next(module.parameters())
        reason = _by_hand_reason(folder, name, method, parameter.device)
        if reason is None:
            cache = cache_folder(cache_dir, loaded.info.sha256, method_name, parameter.dtype, name)
            quantized, route = load_quantized(type(module), folder, name, method, dtype=parameter.dtype,
                                              device=parameter.device, cache=cache)
        else:
            quantized = method.quantize(module, in_place=not keep_original)
            route = f"{ROUTE_BY_HAND}: {reason}"
        if keep_original:
            result.originals[name] = module
        setattr(pipe, name, quantized)
        result.sizes[name] = (before, size_of(quantized))
        result.routes[name] = route
        log.info("quantized %s with %s (%s): %s", name, method_name, route, result.sizes[name][1].describe())
    return result
