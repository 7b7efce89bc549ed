"""Weight quantization methods behind one protocol: the diffusers quantization config each method maps to, plus a
hand-written ``quantize(module) -> module`` for the cases diffusers has no path for, plus a size report.

The normal path is diffusers' own load-time quantizer: :meth:`QuantizationMethod.diffusers_config` is what the
component's ``from_pretrained(..., quantization_config=...)`` receives (see :mod:`modules.quantization.apply`).
:meth:`QuantizationMethod.quantize` swaps layers by hand on a *copy* of an already loaded component; it is kept
only where diffusers cannot load the component quantized: a single-file checkpoint (no component folder to load
from, and diffusers' single-file loader does not quantize), bitsandbytes on a CPU-only device (diffusers'
bitsandbytes quantizer refuses to run without a GPU, while bitsandbytes itself has CPU kernels), and a library
diffusers did not see when it was imported. Linear layers are what these libraries quantize; convolutions stay in
the original precision, which is why an SD UNet shrinks less than 4x with int8.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from modules.core.errors import UnsupportedError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SizeReport:
    """Bytes of a module's parameters and buffers as stored (quantized tensors count their packed storage)."""

    bytes: int
    quantized_layers: int

    @property
    def mib(self) -> float:
        return self.bytes / 2 ** 20

    def describe(self) -> str:
        return f"{self.mib:.1f} MiB, {self.quantized_layers} quantized layers"


def _tensor_bytes(tensor: torch.Tensor) -> int:
    inner = getattr(tensor, "__tensor_flatten__", None)
    if inner is not None and type(tensor) is not torch.Tensor and type(tensor) is not torch.nn.Parameter:
        names, _ = inner()
        return sum(_tensor_bytes(getattr(tensor, name)) for name in names)
    data = tensor.data if isinstance(tensor, torch.nn.Parameter) else tensor
    total = data.numel() * data.element_size()
    state = getattr(tensor, "quant_state", None)  # bitsandbytes 4-bit: absmax and friends
    if state is not None and getattr(state, "absmax", None) is not None:
        total += state.absmax.numel() * state.absmax.element_size()
    scb = getattr(tensor, "SCB", None)  # bitsandbytes int8 row scales
    if isinstance(scb, torch.Tensor):
        total += scb.numel() * scb.element_size()
    return total


def size_of(module: torch.nn.Module) -> SizeReport:
    seen: set[int] = set()
    total = 0
    quantized = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += _tensor_bytes(tensor)
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter) or tensor.dtype in (torch.int8, torch.uint8):
            quantized += 1
    return SizeReport(total, quantized)


class QuantizationMethod(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    package: ClassVar[str]  # the import name of the library that quantizes
    pip_name: ClassVar[str]
    # diffusers saves the quantized component as safetensors and loads it back quantized (Easel's cache)
    cacheable: ClassVar[bool] = False

    def is_available(self) -> tuple[bool, str]:
        import importlib.util

        from modules.core.lazy_imports import release

        release(self.package.split(".")[0])  # kept from the libraries' start-up probes, not from Easel
        if importlib.util.find_spec(self.package.split(".")[0]) is None:
            return False, f"the {self.pip_name} package is not installed (pip install {self.pip_name})"
        return True, f"{self.pip_name} is installed"

    @abstractmethod
    def diffusers_config(self, compute_dtype: torch.dtype) -> Any:
        """The diffusers quantization config (``BitsAndBytesConfig``, ``QuantoConfig``, ``TorchAoConfig``)."""

    def diffusers_refusal(self, device: torch.device) -> str | None:
        """Why diffusers' quantizer for this method cannot load a component onto ``device``; None when it can.

        diffusers reads which quantization libraries exist once, when it is imported. Easel's start-up keeps
        bitsandbytes and torchao out of that probe unless the ``quantization`` option needs one of them
        (:func:`probe_packages`, :mod:`modules.core.lazy_imports`); a method switched to later finds diffusers
        blind to its library until Easel restarts."""
        import diffusers.utils

        probe = _DIFFUSERS_PROBES[self.package]
        if not getattr(diffusers.utils, probe)():
            return (f"diffusers did not see {self.pip_name} when it was imported (Easel's start-up keeps it out "
                    "unless the quantization option uses it); restart Easel with this quantization set")
        return None

    def load_kwargs(self, device: torch.device) -> dict[str, Any]:
        """Extra ``from_pretrained`` arguments (bitsandbytes places the weights while it quantizes them)."""
        return {}

    @abstractmethod
    def quantize(self, module: torch.nn.Module, *, in_place: bool = False) -> torch.nn.Module:
        """``module`` quantized by hand, only for what diffusers cannot load quantized (see the module
        docstring): a quantized copy (``module`` left untouched), or with ``in_place`` ``module`` itself, which
        spares holding the unquantized and the quantized weights at once when the original is not kept."""

    def require_available(self) -> None:
        available, reason = self.is_available()
        if not available:
            raise UnsupportedError(f"quantization {self.name!r} cannot run here: {reason}")


METHODS: dict[str, QuantizationMethod] = {}

MethodT = TypeVar("MethodT", bound=QuantizationMethod)


def register_method(method: MethodT) -> MethodT:
    if method.name in METHODS:
        raise ValueError(f"quantization method {method.name!r} is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> QuantizationMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise UnsupportedError(f"unknown quantization {name!r}; known: {', '.join(sorted(METHODS))}") from None


# The diffusers.utils function that answers whether diffusers saw each library when it was imported.
_DIFFUSERS_PROBES: dict[str, str] = {"bitsandbytes": "is_bitsandbytes_available",
                                     "optimum.quanto": "is_optimum_quanto_available",
                                     "torchao": "is_torchao_available"}


def probe_packages(method_name: str) -> tuple[str, ...]:
    """The packages diffusers must see at its import for ``method_name`` to load through it (none for "none")."""
    if method_name == "none" or method_name not in METHODS:
        return ()
    return (METHODS[method_name].package.split(".")[0],)


def _linear_layers(module: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Linear]]:
    found = []
    for parent in module.modules():
        for child_name, child in parent.named_children():
            if type(child) is torch.nn.Linear:
                found.append((parent, child_name, child))
    return found


class BitsAndBytes(QuantizationMethod):
    """bitsandbytes ``Linear8bitLt`` / ``Linear4bit`` (nf4, fp4) through diffusers' ``BitsAndBytesConfig`` on a
    GPU. On a CPU device diffusers' bitsandbytes quantizer refuses ("No GPU found"), so :meth:`quantize` builds
    the same bitsandbytes layers by hand there, whose CPU kernels run them."""

    cacheable = True  # diffusers serialises bitsandbytes int8 and 4-bit weights as safetensors
    package = "bitsandbytes"
    pip_name = "bitsandbytes"

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"bnb-{kind}"  # type: ignore[misc]
        self.description = f"bitsandbytes {kind} weights (Linear layers)"  # type: ignore[misc]

    def diffusers_config(self, compute_dtype: torch.dtype) -> Any:
        from diffusers import BitsAndBytesConfig

        if self.kind == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=self.kind,
                                  bnb_4bit_compute_dtype=compute_dtype)

    def diffusers_refusal(self, device: torch.device) -> str | None:
        if device.type not in ("cuda", "xpu"):
            return f"diffusers' bitsandbytes quantizer needs a GPU and the device is {device.type}"
        return super().diffusers_refusal(device)

    def load_kwargs(self, device: torch.device) -> dict[str, Any]:
        return {"device_map": {"": str(device)}}

    def quantize(self, module: torch.nn.Module, *, in_place: bool = False) -> torch.nn.Module:
        self.require_available()
        import bitsandbytes as bnb

        quantized = module if in_place else copy.deepcopy(module)
        device = next(quantized.parameters()).device
        compute_dtype = next(quantized.parameters()).dtype
        for parent, name, linear in _linear_layers(quantized):
            weight = linear.weight.data.float().cpu()
            if self.kind == "int8":
                layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                            has_fp16_weights=False, threshold=0.0)
                layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
            else:
                layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                          compute_dtype=compute_dtype, quant_type=self.kind)
                layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type=self.kind)
            if linear.bias is not None:
                layer.bias = torch.nn.Parameter(linear.bias.data.clone(), requires_grad=False)
            setattr(parent, name, layer.to(device))
        return quantized


class Quanto(QuantizationMethod):
    """optimum-quanto weight quantization (qint8, qint4, qfloat8) through diffusers' ``QuantoConfig``."""

    cacheable = True
    package = "optimum.quanto"
    pip_name = "optimum-quanto"

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.name = f"quanto-{kind}"  # type: ignore[misc]
        self.description = f"optimum-quanto {kind} weights"  # type: ignore[misc]

    def diffusers_config(self, compute_dtype: torch.dtype) -> Any:
        from diffusers import QuantoConfig

        return QuantoConfig(weights_dtype=self.kind)

    def _weights(self) -> Any:
        from optimum import quanto

        return {"int8": quanto.qint8, "int4": quanto.qint4, "float8": quanto.qfloat8}[self.kind]

    def quantize(self, module: torch.nn.Module, *, in_place: bool = False) -> torch.nn.Module:
        self.require_available()
        from optimum.quanto import freeze, quantize

        quantized = module if in_place else copy.deepcopy(module)
        quantize(quantized, weights=self._weights())
        freeze(quantized)
        return quantized


class TorchAoInt8(QuantizationMethod):
    """torchao int8 weight-only (``Int8WeightOnlyConfig``) through diffusers' ``TorchAoConfig``. Not cached:
    diffusers serialises torchao tensors only as a pickle, which Easel does not load, and quantizing at load
    takes about as long as reading the weights."""

    name = "torchao-int8"
    description = "torchao int8 weight-only"
    package = "torchao"
    pip_name = "torchao"

    def diffusers_config(self, compute_dtype: torch.dtype) -> Any:
        from diffusers import TorchAoConfig
        from torchao.quantization import Int8WeightOnlyConfig

        return TorchAoConfig(Int8WeightOnlyConfig())

    def quantize(self, module: torch.nn.Module, *, in_place: bool = False) -> torch.nn.Module:
        self.require_available()
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantized = module if in_place else copy.deepcopy(module)
        quantize_(quantized, Int8WeightOnlyConfig())
        return quantized


for _kind in ("int8", "nf4", "fp4"):
    register_method(BitsAndBytes(_kind))
for _kind in ("int8", "int4", "float8"):
    register_method(Quanto(_kind))
register_method(TorchAoInt8())
