"""TensorRT execution for NVIDIA GPUs: an engine built from the ONNX export, with static or dynamic profiles.

Needs the ``tensorrt`` package (TensorRT 10 API: named I/O tensors, ``execute_async_v3``) and a CUDA device;
anywhere else :meth:`TensorRtBackend.is_available` says why and ``prepare`` raises
:class:`~modules.core.errors.UnsupportedError` before any export starts. The serialized engine is cached next to
the ONNX export (``<cache>/tensorrt/<hash>-<shape-policy>-<precision>/unet.plan``); engines are specific to the
GPU and TensorRT version, so both are part of the file name.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import torch

from modules.backends.base import (
    ExecutionBackend,
    GraphUNet,
    ShapePolicy,
    export_key,
    install_component,
    unet_example_inputs,
)
from modules.backends.onnx_export import export_unet
from modules.core.errors import UnsupportedError

log = logging.getLogger(__name__)

# Dynamic profiles: batch 1..8 (4 images with CFG), 256..1024 px, prompts up to 3 chunks of 77 tokens.
DYNAMIC_RANGES = {"batch": (1, 2, 8), "latent": (32, 64, 128), "tokens": (77, 77, 231)}


def profile_shapes(inputs: dict[str, torch.Tensor], shape_policy: ShapePolicy
                   ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """min/opt/max shape per input; a static policy has min == opt == max."""
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {}
    for name, tensor in inputs.items():
        if shape_policy.kind == "static":
            shape = tuple(tensor.shape)
            shapes[name] = (shape, shape, shape)
            continue
        low, mid, high = [], [], []
        for index, size in enumerate(tensor.shape):
            if index == 0:
                key = "batch"
            elif name == "sample" and index >= 2:
                key = "latent"
            elif name == "encoder_hidden_states" and index == 1:
                key = "tokens"
            else:
                low.append(size)
                mid.append(size)
                high.append(size)
                continue
            a, b, c = DYNAMIC_RANGES[key]
            low.append(a)
            mid.append(b)
            high.append(c)
        shapes[name] = (tuple(low), tuple(mid), tuple(high))
    return shapes


def build_engine(onnx_path: Path, plan_path: Path, inputs: dict[str, torch.Tensor], shape_policy: ShapePolicy,
                 fp16: bool) -> bytes:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise UnsupportedError(f"TensorRT could not parse the ONNX export: {errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (low, mid, high) in profile_shapes(inputs, shape_policy).items():
        profile.set_shape(name, low, mid, high)
    config.add_optimization_profile(profile)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UnsupportedError("TensorRT failed to build the UNet engine (see the log for TensorRT's reason)")
    data = bytes(serialized)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    staging = plan_path.with_name(".staging-" + plan_path.name)
    staging.write_bytes(data)
    staging.replace(plan_path)
    log.info("built TensorRT engine in %.1fs: %s", time.perf_counter() - started, plan_path)
    return data


class TrtGraph:
    """An engine and its execution context; inputs and output live in CUDA torch tensors (no host copies)."""

    def __init__(self, plan: bytes, device: torch.device) -> None:
        import tensorrt as trt

        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        self.context = self.engine.create_execution_context()
        self.device = device
        self.output_name = next(self.engine.get_tensor_name(index) for index in range(self.engine.num_io_tensors)
                                if self.engine.get_tensor_mode(self.engine.get_tensor_name(index))
                                == trt.TensorIOMode.OUTPUT)
        self.dtypes = {self.engine.get_tensor_name(index): _torch_dtype(self.engine.get_tensor_dtype(
            self.engine.get_tensor_name(index))) for index in range(self.engine.num_io_tensors)}

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        stream = torch.cuda.current_stream(self.device)
        keep = []
        for name, tensor in inputs.items():
            tensor = tensor.to(self.device, self.dtypes[name]).contiguous()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        out = torch.empty(out_shape, dtype=self.dtypes[self.output_name], device=self.device)
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return out


def _torch_dtype(trt_dtype: Any) -> torch.dtype:
    import tensorrt as trt

    return {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16,
            trt.int32: torch.int32, trt.int64: torch.int64}[trt_dtype]




class TensorRtBackend(ExecutionBackend):
    name: ClassVar[str] = "tensorrt"

    def is_available(self) -> tuple[bool, str]:
        if not torch.cuda.is_available():
            return False, "TensorRT needs an NVIDIA GPU with CUDA; none is visible to PyTorch here"
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return False, "the tensorrt package is not installed (pip install tensorrt)"
        return True, "CUDA and tensorrt are present"

    def prepare(self, loaded: Any, *, cache_dir: Path, precision: str = "fp16",
                shape_policy: ShapePolicy = ShapePolicy()) -> None:
        self.require_available()  # before any export: fail early on machines without NVIDIA
        import tensorrt as trt

        pipe = loaded.pipe
        unet = pipe.unet
        if unet.device.type != "cuda":
            raise UnsupportedError(f"TensorRT runs on CUDA devices; the model is on {unet.device}")
        precision = "fp16" if precision == "auto" else precision
        if precision not in ("fp16", "fp32"):
            raise UnsupportedError(f"TensorRT backend: precision {precision!r} is not supported (fp16, fp32)")
        folder = Path(cache_dir) / "tensorrt" / export_key(loaded, shape_policy, precision)
        gpu = torch.cuda.get_device_name(unet.device).replace(" ", "_")
        plan_path = folder / f"unet-{gpu}-trt{trt.__version__}.plan"
        # The ONNX graph is exported in fp32; the FP16 builder flag picks half kernels where it is safe.
        inputs = unet_example_inputs(unet, shape_policy, torch.float32)
        if plan_path.exists():
            plan = plan_path.read_bytes()
        else:
            onnx_path = export_unet(_fp32_cpu_copy(unet), folder / "onnx", shape_policy, torch.float32)
            plan = build_engine(onnx_path, plan_path, inputs, shape_policy, fp16=precision == "fp16")
        install_component(pipe, "unet", GraphUNet(unet, TrtGraph(plan, unet.device), self.name))


def _fp32_cpu_copy(unet: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(unet).to("cpu", torch.float32)
