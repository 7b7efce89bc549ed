"""Memory strategies: each applies one diffusers/accelerate mechanism and returns a patch that undoes it.

All of them delegate to the libraries' own switches (attention slicing, ``AttnProcessor2_0``, VAE slicing and
tiling, accelerate's model/sequential offload hooks, diffusers' group-offload hooks, tomesd); what Easel adds is
the uniform apply/remove shape and exact reversal: the state each switch changes is recorded before and put
back after, so a pipeline after ``remove()`` computes bit-identical images.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch

from modules.core.errors import UnsupportedError

log = logging.getLogger(__name__)


@dataclass
class MemoryContext:
    """What a strategy needs besides the pipeline: where computation happens."""

    device: torch.device
    token_merging_ratio: float = 0.5


@dataclass
class AppliedStrategy:
    """A strategy in effect on one pipeline; ``remove()`` undoes it exactly once."""

    name: str
    _undo: Callable[[], None]
    removed: bool = False

    def remove(self) -> None:
        if not self.removed:
            self._undo()
            self.removed = True


class MemoryStrategy(ABC):
    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        """Switch the strategy on for ``pipe``; the returned handle switches it off again."""


STRATEGIES: dict[str, MemoryStrategy] = {}

StrategyT = TypeVar("StrategyT", bound=type[MemoryStrategy])


def register_strategy(cls: StrategyT) -> StrategyT:
    if cls.name in STRATEGIES:
        raise ValueError(f"memory strategy {cls.name!r} is already registered")
    STRATEGIES[cls.name] = cls()
    return cls


def get_strategy(name: str) -> MemoryStrategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnsupportedError(f"unknown memory strategy {name!r}; known: {', '.join(sorted(STRATEGIES))}") from None


def _attention_modules(pipe: Any) -> list[Any]:
    return [module for module in (getattr(pipe, "unet", None), getattr(pipe, "vae", None))
            if module is not None and hasattr(module, "attn_processors")]


def _snapshot_processors(pipe: Any) -> Callable[[], None]:
    saved = [(module, dict(module.attn_processors)) for module in _attention_modules(pipe)]

    def restore() -> None:
        for module, processors in saved:
            module.set_attn_processor(processors)
    return restore


@register_strategy
class AttentionSlicing(MemoryStrategy):
    name = "attention_slicing"
    description = "compute attention in slices (diffusers SlicedAttnProcessor): less peak memory, slower"

    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        restore = _snapshot_processors(pipe)
        pipe.unet.set_attention_slice("auto")
        return AppliedStrategy(self.name, restore)


@register_strategy
class ScaledDotProductAttention(MemoryStrategy):
    name = "sdpa"
    description = "PyTorch scaled_dot_product_attention (flash / memory-efficient kernels where available)"

    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        from diffusers.models.attention_processor import AttnProcessor2_0

        restore = _snapshot_processors(pipe)
        for module in _attention_modules(pipe):
            module.set_attn_processor(AttnProcessor2_0())
        return AppliedStrategy(self.name, restore)


@register_strategy
class VaeSlicing(MemoryStrategy):
    name = "vae_slicing"
    description = "decode a batch one image at a time"

    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        vae = pipe.vae
        before = bool(getattr(vae, "use_slicing", False))
        vae.enable_slicing()
        return AppliedStrategy(self.name, lambda: vae.enable_slicing() if before else vae.disable_slicing())


@register_strategy
class VaeTiling(MemoryStrategy):
    name = "vae_tiling"
    description = "decode/encode large images in overlapping tiles (constant memory in image size)"

    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        vae = pipe.vae
        before = bool(getattr(vae, "use_tiling", False))
        vae.enable_tiling()
        return AppliedStrategy(self.name, lambda: vae.enable_tiling() if before else vae.disable_tiling())


def _offload_undo(pipe: Any, device: torch.device) -> Callable[[], None]:
    placements = {name: (component.device, component.dtype) for name, component in pipe.components.items()
                  if isinstance(component, torch.nn.Module) and hasattr(component, "device")}

    def undo() -> None:
        pipe.remove_all_hooks()
        for name, (where, _dtype) in placements.items():
            getattr(pipe, name).to(where)
    return undo


@register_strategy
class ModelCpuOffload(MemoryStrategy):
    name = "model_cpu_offload"
    description = "keep whole models in RAM, move each to the device while it runs (accelerate hooks; --medvram)"

    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        undo = _offload_undo(pipe, context.device)
        pipe.enable_model_cpu_offload(device=context.device)
        return AppliedStrategy(self.name, undo)


@register_strategy
class SequentialCpuOffload(MemoryStrategy):
    name = "sequential_offload"
    description = "move each layer to the device only while it runs (accelerate hooks; --lowvram): least memory"

    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        undo = _offload_undo(pipe, context.device)
        # accelerate moves weights to the meta device and keeps a CPU copy; remember the real tensors so the
        # pipeline gets its own weights back, not re-created ones.
        state = {name: {key: value for key, value in component.state_dict(keep_vars=True).items()}
                 for name, component in pipe.components.items() if isinstance(component, torch.nn.Module)}
        pipe.enable_sequential_cpu_offload(device=context.device)

        def full_undo() -> None:
            undo()
            for name, tensors in state.items():
                component = getattr(pipe, name)
                for key, tensor in tensors.items():
                    _set_tensor(component, key, tensor)
        return AppliedStrategy(self.name, full_undo)


def _set_tensor(module: torch.nn.Module, key: str, tensor: torch.Tensor) -> None:
    *path, leaf = key.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    if leaf in owner._parameters:
        owner._parameters[leaf] = tensor if isinstance(tensor, torch.nn.Parameter) else torch.nn.Parameter(
            tensor, requires_grad=False)
    elif leaf in owner._buffers:
        owner._buffers[leaf] = tensor


@register_strategy
class GroupOffload(MemoryStrategy):
    name = "group_offload"
    description = "diffusers group offloading: blocks move to the device in groups (between model and sequential)"

    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        from diffusers.hooks import HookRegistry

        placements = {name: component.device for name, component in pipe.components.items()
                      if isinstance(component, torch.nn.Module) and hasattr(component, "device")}
        pipe.enable_group_offload(onload_device=context.device, offload_device=torch.device("cpu"),
                                  offload_type="block_level", num_blocks_per_group=1)

        def undo() -> None:
            for name, where in placements.items():
                component = getattr(pipe, name)
                registry = HookRegistry.check_if_exists_or_initialize(component)
                for hook in ("group_offloading", "layer_execution_tracker", "lazy_prefetch_group_offloading"):
                    registry.remove_hook(hook, recurse=True)
                component.to(where)
        return AppliedStrategy(self.name, undo)


@register_strategy
class TokenMerging(MemoryStrategy):
    name = "token_merging"
    description = "ToMe for SD (tomesd): merge redundant tokens in the UNet's attention; faster, less memory"

    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        try:
            import tomesd
        except ImportError as exc:
            raise UnsupportedError("token merging needs the tomesd package (pip install tomesd)") from exc
        tomesd.apply_patch(pipe, ratio=context.token_merging_ratio)
        return AppliedStrategy(self.name, lambda: tomesd.remove_patch(pipe))


@register_strategy
class VaeUpcast(MemoryStrategy):
    name = "vae_upcast"
    description = "run the VAE in fp32 while the UNet runs in fp16/bf16 (avoids black/NaN images)"

    def apply(self, pipe: Any, context: MemoryContext) -> AppliedStrategy:
        vae = pipe.vae
        before = vae.dtype
        # fp16/bf16 -> fp32 -> fp16/bf16 is exact, so putting the original dtype back restores the weights.
        vae.to(torch.float32)
        return AppliedStrategy(self.name, lambda: vae.to(before))
