"""PyTorch execution (the default): SDPA attention, channels-last on accelerators, bf16 where the CPU has it,
optional compile.

``torch.compile`` is a GPU option: on this project's 2-core CPU the first compiled call of an SD 1.5 UNet took
159 s and later steps were no faster, so it is only used when asked for (``compile_mode``).

Reversibility: attention processors are snapshotted and put back, channels-last is undone by converting back to
contiguous (a layout change, values untouched), and a dtype change runs on a *copy* of the UNet so the original
weights are never rounded (restore gives bit-identical output; the price is the copy's memory while active).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, ClassVar

import torch

from modules.backends.base import ComponentWrapper, ExecutionBackend, ShapePolicy, install_component

log = logging.getLogger(__name__)

COMPILE_MODES: tuple[str, ...] = ("default", "reduce-overhead", "max-autotune")


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels here (AVX512-BF16 or AMX); else bf16 is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_torch_dtype(precision: str, device: torch.device, current: torch.dtype) -> torch.dtype:
    """``auto`` keeps the loaded dtype except on CPUs with native bf16; explicit precisions are honoured."""
    wanted = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    if wanted is not None:
        return wanted
    if device.type == "cpu" and current == torch.float32 and cpu_has_fast_bf16():
        return torch.bfloat16
    return current


class TorchUNet(ComponentWrapper):
    """Runs the (possibly converted / compiled) UNet; casts inputs to its dtype and the output back."""

    backend_name = "torch"

    def __init__(self, original: torch.nn.Module, runner: torch.nn.Module, callable_: Any, undo: Any) -> None:
        super().__init__(original, undo)
        object.__setattr__(self, "_runner", runner)
        object.__setattr__(self, "_callable", callable_)

    @property
    def dtype(self) -> torch.dtype:
        return self.original.dtype  # the loop keeps its latents in the pipeline's dtype

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, *args: Any,
                **kwargs: Any) -> Any:
        runner: Any = object.__getattribute__(self, "_runner")
        run_dtype = runner.dtype
        out_dtype = sample.dtype
        if run_dtype != out_dtype:
            sample = sample.to(run_dtype)
            encoder_hidden_states = encoder_hidden_states.to(run_dtype)
            added = kwargs.get("added_cond_kwargs")
            if added:
                kwargs["added_cond_kwargs"] = {key: _cast(value, run_dtype) for key, value in added.items()}
        result = object.__getattribute__(self, "_callable")(sample, timestep, encoder_hidden_states, *args, **kwargs)
        if run_dtype == out_dtype:
            return result
        if isinstance(result, tuple):
            return (result[0].to(out_dtype), *result[1:])
        result.sample = result.sample.to(out_dtype)
        return result


class TorchBackend(ExecutionBackend):
    name: ClassVar[str] = "torch"

    def __init__(self, *, channels_last: bool | None = None, compile_mode: str | None = None) -> None:
        if compile_mode is not None and compile_mode not in COMPILE_MODES:
            raise ValueError(f"compile mode {compile_mode!r} is not one of {', '.join(COMPILE_MODES)}")
        self.channels_last = channels_last
        self.compile_mode = compile_mode

    def is_available(self) -> tuple[bool, str]:
        return True, "PyTorch is always available"

    def prepare(self, loaded: Any, *, cache_dir: Path | None = None, precision: str = "auto",
                shape_policy: ShapePolicy = ShapePolicy(), compile_mode: str | None = None,
                channels_last: bool | None = None) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        pipe = loaded.pipe
        unet = pipe.unet
        dtype = resolve_torch_dtype(precision, unet.device, unet.dtype)
        runner = unet if dtype == unet.dtype else copy.deepcopy(unet).to(dtype)
        undo_steps: list[Any] = []
        if hasattr(runner, "attn_processors"):
            saved = dict(runner.attn_processors)
            runner.set_attn_processor(AttnProcessor2_0())
            undo_steps.append(lambda: runner.set_attn_processor(saved))
        use_channels_last = self.channels_last if channels_last is None else channels_last
        if use_channels_last is None:
            # measured with cli/bench.py on this project's CPU: channels-last made a diffusers UNet step slower
            # (0.85x at 128² on the 2.7 M embedded UNet, 0.88x at 512² on a 37.5 M SD 1.5-layout UNet), so it is
            # an accelerator default only
            use_channels_last = runner.device.type != "cpu"
        if use_channels_last:
            runner.to(memory_format=torch.channels_last)
            undo_steps.append(lambda: runner.to(memory_format=torch.contiguous_format))
        mode = compile_mode or self.compile_mode
        callable_: Any = runner
        if mode is not None:
            if mode not in COMPILE_MODES:
                raise ValueError(f"compile mode {mode!r} is not one of {', '.join(COMPILE_MODES)}")
            callable_ = torch.compile(runner, mode=mode, fullgraph=False)

        def undo() -> None:
            if runner is unet:
                for step in reversed(undo_steps):
                    step()

        install_component(pipe, "unet", TorchUNet(unet, runner, callable_, undo))
        log.info("torch backend: %s, channels-last %s, compile %s", dtype, use_channels_last, mode or "off")


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """Tensors, and lists of tensors (IP-Adapter ``image_embeds``), in the runner's dtype."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype)
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(item, dtype) for item in value)
    return value
