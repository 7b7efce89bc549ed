"""ONNX Runtime execution: the UNet and the VAE decoder exported once with ``torch.onnx`` and run by ORT.

Execution providers are picked from what the installed ORT build offers for the device: CUDA (or DirectML on
Windows) first, then the CPU. The CPU provider runs fp32 graphs only (its fp16 kernels are too sparse to be
useful), so fp16/bf16 requests on the CPU are refused with a message rather than silently run in fp32.
The VAE encoder (img2img) and the text encoder stay in PyTorch: they run once per image and are cheap.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from modules.backends.base import (
    ExecutionBackend,
    GraphUNet,
    GraphVae,
    ShapePolicy,
    export_key,
    install_component,
)
from modules.backends.onnx_export import export_unet, export_vae_decoder
from modules.core.errors import UnsupportedError

log = logging.getLogger(__name__)

_TORCH_TO_NUMPY = {torch.float32: np.float32, torch.float16: np.float16}
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def choose_providers(device: torch.device, available: list[str]) -> list[str]:
    """Accelerated provider for the device when the ORT build has it, CPU always last as the fallback."""
    preferred: list[str] = []
    if device.type == "cuda":
        preferred = ["CUDAExecutionProvider"]
    elif device.type in ("privateuseone", "dml"):
        preferred = ["DmlExecutionProvider"]
    return [name for name in preferred if name in available] + ["CPUExecutionProvider"]


class OrtGraph:
    """One ORT session with numpy/torch conversion at its boundary."""

    def __init__(self, path: Path, providers: list[str], threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.input_types = {item.name: _ORT_TYPES.get(item.type, np.float32) for item in self.session.get_inputs()}

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: inputs[name].detach().cpu().numpy().astype(self.input_types[name], copy=False)
                for name in self.input_types}
        return torch.from_numpy(self.session.run(None, feed)[0])


def export_folder(cache_dir: Path, family: str, loaded: Any, shape_policy: ShapePolicy, precision: str) -> Path:
    return Path(cache_dir) / family / export_key(loaded, shape_policy, precision)


class OnnxRuntimeBackend(ExecutionBackend):
    name: ClassVar[str] = "onnxruntime"

    def __init__(self, *, include_vae: bool = True, threads: int | None = None) -> None:
        self.include_vae = include_vae
        self.threads = threads

    def is_available(self) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return False, "the onnxruntime package is not installed (pip install onnxruntime)"
        return True, "onnxruntime is installed"

    def prepare(self, loaded: Any, *, cache_dir: Path, precision: str = "fp32",
                shape_policy: ShapePolicy = ShapePolicy(), include_vae: bool | None = None) -> None:
        pipe = loaded.pipe
        unet, vae = pipe.unet, pipe.vae
        graph, vae_graph = self.build_graphs(loaded, unet, vae, cache_dir=cache_dir, precision=precision,
                                             shape_policy=shape_policy, include_vae=include_vae)
        install_component(pipe, "unet", GraphUNet(unet, graph, self.name))
        if vae_graph is not None:
            install_component(pipe, "vae", GraphVae(vae, vae_graph, self.name))

    def build_graphs(self, loaded: Any, unet: Any, vae: Any, *, cache_dir: Path, precision: str = "fp32",
                     shape_policy: ShapePolicy = ShapePolicy(), include_vae: bool | None = None
                     ) -> tuple[OrtGraph, OrtGraph | None]:
        """Export (or read the cached export of) ``unet`` and the VAE decoder and open ORT sessions; installs
        nothing, so ``backend: auto`` can run this in a background thread."""
        import onnxruntime as ort

        self.require_available()
        precision = "fp32" if precision == "auto" else precision
        providers = choose_providers(unet.device, ort.get_available_providers())
        if precision != "fp32" and providers == ["CPUExecutionProvider"]:
            raise UnsupportedError(f"ONNX Runtime on the CPU runs fp32 graphs only (asked for {precision})")
        if precision not in ("fp32", "fp16"):
            raise UnsupportedError(f"ONNX Runtime backend: precision {precision!r} is not supported (fp32, fp16)")
        dtype = torch.float16 if precision == "fp16" else torch.float32
        folder = export_folder(cache_dir, "onnx", loaded, shape_policy, precision)
        started = time.perf_counter()
        source = unet if unet.dtype == dtype else _converted(unet, dtype)
        graph = OrtGraph(export_unet(source, folder, shape_policy, dtype), providers, self.threads)
        vae_graph = None
        if self.include_vae if include_vae is None else include_vae:
            vae_source = vae if vae.dtype == dtype else _converted(vae, dtype)
            vae_graph = OrtGraph(export_vae_decoder(vae_source, folder, shape_policy, dtype), providers, self.threads)
        log.info("onnxruntime backend ready in %.1fs (%s, %s)", time.perf_counter() - started, folder.name,
                 ", ".join(providers))
        return graph, vae_graph


def _converted(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    import copy

    return copy.deepcopy(module).to(dtype)
