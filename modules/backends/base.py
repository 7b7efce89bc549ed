"""The execution-backend protocol: how a loaded model's UNet (and VAE decoder) is run.

A backend replaces ``pipe.unet`` (optionally ``pipe.vae``) by a module-like wrapper with the same call signature
and the ``config``/``dtype``/``device`` attributes Easel's denoising loop reads, so the loop, the samplers, CFG,
img2img and batches work unchanged on every backend. The wrapper keeps the original component, so ``restore``
puts it back untouched (bit-identical output afterwards). Exported graphs are cached in the data dir, keyed by
the model hash, the shape policy and the precision, so a second ``prepare`` of the same model only loads.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from modules.core.errors import UnsupportedError

Precision = Literal["fp32", "fp16", "bf16", "auto"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "auto")


@dataclass(frozen=True)
class ShapePolicy:
    """Which input shapes an exported graph accepts.

    ``dynamic`` graphs take any batch and latent size (one export serves every request); ``static`` graphs are
    built for one batch and image size, which some runtimes (TensorRT, OpenVINO on NPU) optimise much better.
    """

    kind: Literal["dynamic", "static"] = "dynamic"
    batch: int = 2  # UNet batch: 2 = one image with classifier-free guidance
    height: int = 512
    width: int = 512

    @property
    def key(self) -> str:
        if self.kind == "dynamic":
            return "dynamic"
        return f"static-b{self.batch}-{self.width}x{self.height}"

    @classmethod
    def parse(cls, text: str) -> ShapePolicy:
        """``dynamic`` or ``static-b2-512x512`` (the :attr:`key` format)."""
        if text == "dynamic":
            return cls()
        match = re.fullmatch(r"static-b(\d+)-(\d+)x(\d+)", text)
        if not match:
            raise ValueError(f"shape policy {text!r}: expected 'dynamic' or 'static-b<batch>-<width>x<height>'")
        batch, width, height = (int(group) for group in match.groups())
        return cls("static", batch, height, width)


def normalize_backend_precision(precision: str) -> str:
    from modules.devices.base import normalize_precision

    return normalize_precision(precision)


def export_key(loaded: Any, shape_policy: ShapePolicy, precision: str) -> str:
    """``<model-hash>-<shape-policy>-<precision>``; models without a file hash fall back to a hash of the path."""
    info = getattr(loaded, "info", None)
    model_hash = getattr(info, "sha256", None) or getattr(info, "shorthash", None)
    if not model_hash:
        path = str(getattr(info, "path", "")) or repr(id(loaded))
        model_hash = "path-" + hashlib.sha256(path.encode()).hexdigest()
    return f"{str(model_hash)[:16]}-{shape_policy.key}-{precision}"


class ExecutionBackend(ABC):
    """One way of running a pipeline's networks. Instances are stateless; the wrapper carries what to undo."""

    name: ClassVar[str]

    @abstractmethod
    def is_available(self) -> tuple[bool, str]:
        """Whether this backend can run here; the reason says what is missing when it cannot."""

    @abstractmethod
    def prepare(self, loaded: Any, *, cache_dir: Path, precision: str = "fp32",
                shape_policy: ShapePolicy = ShapePolicy()) -> None:
        """Swap ``loaded.pipe``'s networks for this backend's wrappers (exporting or loading from the cache)."""

    def restore(self, loaded: Any) -> None:
        """Put the original components back (no-op if this backend's wrappers are not installed)."""
        restore_components(loaded.pipe)

    def require_available(self) -> None:
        available, reason = self.is_available()
        if not available:
            raise UnsupportedError(f"execution backend {self.name!r} cannot run here: {reason}")


class ComponentWrapper(torch.nn.Module):
    """Base of the module-like stand-ins: forwards unknown attributes to the original component.

    The original is kept outside ``_modules`` so ``pipe.to()`` or ``parameters()`` on the wrapper do not see
    it twice; ``backend_name`` and ``undo`` let :func:`restore_components` put it back.
    """

    backend_name: str = "torch"

    def __init__(self, original: torch.nn.Module, undo: Callable[[], None] | None = None) -> None:
        super().__init__()
        object.__setattr__(self, "_original", original)
        object.__setattr__(self, "_undo", undo)

    @property
    def original(self) -> Any:  # the diffusers component (typed loosely: its attributes vary by class)
        return object.__getattribute__(self, "_original")

    @property
    def config(self) -> Any:
        return self.original.config

    @property
    def dtype(self) -> torch.dtype:
        return self.original.dtype

    @property
    def device(self) -> torch.device:
        return self.original.device

    def undo(self) -> None:
        undo = object.__getattribute__(self, "_undo")
        if undo is not None:
            undo()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_original"), name)


COMPONENTS: tuple[str, ...] = ("unet", "vae", "text_encoder")


def install_component(pipe: Any, name: str, wrapper: ComponentWrapper) -> None:
    if isinstance(getattr(pipe, name, None), ComponentWrapper):
        raise RuntimeError(f"pipe.{name} already runs on backend {getattr(pipe, name).backend_name!r}; restore first")
    setattr(pipe, name, wrapper)


def restore_components(pipe: Any) -> None:
    """Undo every wrapper on ``pipe`` (in reverse install order, so nested patches unwind correctly)."""
    for name in reversed(COMPONENTS):
        current = getattr(pipe, name, None)
        while isinstance(current, ComponentWrapper):
            current.undo()
            current = current.original
        if current is not None and current is not getattr(pipe, name, None):
            setattr(pipe, name, current)


def active_backend(pipe: Any) -> str:
    """The backend running ``pipe.unet`` (``torch`` when no wrapper is installed)."""
    unet = getattr(pipe, "unet", None)
    return unet.backend_name if isinstance(unet, ComponentWrapper) else "torch"


class GraphUNet(ComponentWrapper):
    """A UNet whose forward runs a compiled graph (ONNX Runtime session, OpenVINO request, TensorRT engine).

    ``graph`` maps the named UNet inputs to the noise prediction; the original stays reachable for restore.
    An exported graph cannot take ControlNet residuals, LoRA adapters or timestep conditions. A backend the user
    chose refuses such a call with a message; one that ``backend: auto`` chose (``torch_fallback``) runs that call
    on the original PyTorch UNet instead, so the default never breaks a feature. ``last_backend`` records which
    of the two ran the latest call, for the infotext.
    """

    torch_fallback: bool
    last_backend: str

    def __init__(self, original: torch.nn.Module, graph: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                 backend_name: str) -> None:
        super().__init__(original)
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "backend_name", backend_name)
        object.__setattr__(self, "torch_fallback", False)
        object.__setattr__(self, "last_backend", backend_name)

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                timestep_cond: Any = None, cross_attention_kwargs: Any = None,
                added_cond_kwargs: dict[str, torch.Tensor] | None = None, return_dict: bool = True,
                **extra: Any) -> Any:
        unsupported = unsupported_unet_inputs(self.original, timestep_cond, cross_attention_kwargs, extra)
        if unsupported and self.torch_fallback:
            object.__setattr__(self, "last_backend", "torch")
            return self.original(sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond,
                                 cross_attention_kwargs=cross_attention_kwargs, added_cond_kwargs=added_cond_kwargs,
                                 return_dict=return_dict, **extra)
        if unsupported:
            raise UnsupportedError(f"the {self.backend_name} backend runs an exported UNet that does not take "
                                   f"{', '.join(unsupported)}; use the torch backend (or auto) for ControlNet, LoRA "
                                   "or LCM timestep conditioning")
        object.__setattr__(self, "last_backend", self.backend_name)
        inputs = unet_call_inputs(self.original, sample, timestep, encoder_hidden_states, added_cond_kwargs)
        out = object.__getattribute__(self, "_graph")(inputs)
        return unet_output(out.to(device=sample.device, dtype=sample.dtype), return_dict)


class GraphVae(ComponentWrapper):
    """A VAE that decodes with a compiled graph; ``encode`` and everything else is the original PyTorch VAE."""

    def __init__(self, original: torch.nn.Module, graph: Callable[[dict[str, torch.Tensor]], torch.Tensor],
                 backend_name: str) -> None:
        super().__init__(original)
        object.__setattr__(self, "_graph", graph)
        object.__setattr__(self, "backend_name", backend_name)

    def decode(self, latents: torch.Tensor, return_dict: bool = True, generator: Any = None) -> Any:
        decoded = object.__getattribute__(self, "_graph")({"latents": latents})
        decoded = decoded.to(device=latents.device, dtype=latents.dtype)
        if return_dict:
            from diffusers.models.autoencoders.vae import DecoderOutput

            return DecoderOutput(sample=decoded)
        return (decoded,)


def unet_output(sample: torch.Tensor, return_dict: bool) -> Any:
    """What ``UNet2DConditionModel.forward`` returns: a tuple, or an object with ``.sample``."""
    if return_dict:
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=sample)
    return (sample,)


def unsupported_unet_inputs(original: Any, timestep_cond: Any, cross_attention_kwargs: Any,
                            extra: dict[str, Any]) -> list[str]:
    """What in this UNet call an exported graph cannot honour: extra inputs (ControlNet residuals), LoRA scales,
    timestep conditions, or LoRA adapters loaded into the original UNet since export (the graph holds the weights
    as they were, so running it would silently drop the LoRA)."""
    used = [key for key, value in extra.items() if value is not None]
    if timestep_cond is not None:
        used.append("timestep_cond")
    if cross_attention_kwargs:
        used.append("cross_attention_kwargs")
    if getattr(original, "_hf_peft_config_loaded", False) and getattr(original, "peft_config", None):
        used.append("LoRA adapters")
    return used


def unet_example_inputs(unet: Any, shape_policy: ShapePolicy, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Named example inputs of the exported UNet graph (SDXL-type UNets add pooled text embeds and time ids)."""
    config = unet.config
    if shape_policy.kind == "static":
        batch, height, width = shape_policy.batch, shape_policy.height // 8, shape_policy.width // 8
    else:
        size = config.sample_size if isinstance(config.sample_size, int) else config.sample_size[0]
        batch, height, width = 2, size, size
    cross_dim = config.cross_attention_dim
    cross_dim = cross_dim[0] if isinstance(cross_dim, (list, tuple)) else cross_dim
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "sample": torch.randn(batch, config.in_channels, height, width, generator=generator, dtype=dtype),
        "timestep": torch.full((batch,), 999.0, dtype=torch.float32),
        "encoder_hidden_states": torch.randn(batch, 77, cross_dim, generator=generator, dtype=dtype),
    }
    if getattr(config, "addition_embed_type", None) == "text_time":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        inputs["text_embeds"] = torch.randn(batch, pooled, generator=generator, dtype=dtype)
        inputs["time_ids"] = torch.randn(batch, 6, generator=generator, dtype=dtype)
    return inputs


class UNetExportAdapter(torch.nn.Module):
    """Positional-tensor façade over a diffusers UNet, the form exporters trace (no dicts, no None)."""

    unet: Any

    def __init__(self, unet: Any) -> None:
        super().__init__()
        self.unet = unet
        self.sdxl = getattr(unet.config, "addition_embed_type", None) == "text_time"

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                text_embeds: torch.Tensor | None = None, time_ids: torch.Tensor | None = None) -> torch.Tensor:
        added = {"text_embeds": text_embeds, "time_ids": time_ids} if self.sdxl else None
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, added_cond_kwargs=added,
                         return_dict=False)[0]


class VaeDecoderExportAdapter(torch.nn.Module):
    """The VAE's decode path (post-quant conv + decoder) as a single-tensor module."""

    vae: Any

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents, return_dict=False)[0]


def unet_call_inputs(unet: Any, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                     added_cond_kwargs: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor]:
    """Turn one loop call into the exported graph's named inputs (timestep broadcast to the batch)."""
    batch = sample.shape[0]
    steps = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)
    steps = steps.expand(batch) if steps.numel() == 1 else steps
    inputs = {"sample": sample, "timestep": steps.contiguous(), "encoder_hidden_states": encoder_hidden_states}
    if getattr(unet.config, "addition_embed_type", None) == "text_time":
        if not added_cond_kwargs:
            raise UnsupportedError("this SDXL-type UNet needs added_cond_kwargs (text_embeds, time_ids)")
        inputs["text_embeds"] = added_cond_kwargs["text_embeds"]
        inputs["time_ids"] = added_cond_kwargs["time_ids"]
    return inputs
