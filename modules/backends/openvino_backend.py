"""OpenVINO execution: UNet and VAE decoder converted with ``openvino.convert_model``, IR cached in the data dir.

Why ``openvino.convert_model`` and not optimum-intel: optimum-intel pins diffusers/huggingface-hub versions that
conflict with Easel's. The converter traces the PyTorch module with example inputs; the resulting IR is saved
(``unet.xml``/``.bin``, weights kept f32 so the precision is decided at compile time, not baked in) and a later
``prepare`` of the same model reads it back instead of converting again (SD 1.5 UNet: ~74 s to convert, 2-5 s to
compile). The inference-precision hint (``f32``/``bf16``/``f16``) maps from Easel's precision; ``auto`` leaves
OpenVINO's own choice (bf16 on CPUs with AVX512-BF16/AMX, f32 elsewhere). Device strings (``CPU``, ``GPU``,
``GPU.1``, ``NPU``, ``AUTO``) are passed through. Optional NNCF int8 weight compression is applied to the IR
before it is cached (see :mod:`modules.quantization.nncf_int8`).
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
    UNetExportAdapter,
    VaeDecoderExportAdapter,
    export_key,
    install_component,
    unet_example_inputs,
)
from modules.core.errors import UnsupportedError

log = logging.getLogger(__name__)

PRECISION_HINTS: dict[str, str | None] = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "auto": None}


class OvGraph:
    """A compiled OpenVINO model with torch tensors in and out."""

    def __init__(self, compiled: Any, input_names: list[str]) -> None:
        self.compiled = compiled
        self.input_names = input_names
        self.request = compiled.create_infer_request()

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = [inputs[name].detach().cpu().float().numpy() for name in self.input_names]
        self.request.infer(feed)
        return torch.from_numpy(np.array(self.request.get_output_tensor(0).data, copy=True))


def convert_to_ir(module: torch.nn.Module, inputs: dict[str, torch.Tensor], target: Path,
                  shape_policy: ShapePolicy, weight_compression: str | None = None) -> Any:
    """Convert (or read the cached IR of) ``module``; returns the ``openvino.Model``."""
    import openvino as ov

    core = ov.Core()
    if target.exists():
        return core.read_model(str(target))
    started = time.perf_counter()
    example = tuple(tensor.float() for tensor in inputs.values())
    with torch.no_grad():
        model = ov.convert_model(module.float().eval(), example_input=example)
    for port, name in zip(model.inputs, inputs):
        port.get_tensor().set_names({name})
    if shape_policy.kind == "dynamic":
        shapes = {}
        for port, (name, tensor) in zip(model.inputs, inputs.items()):
            dims = [-1 if (index == 0 or (name in ("sample", "latents") and index >= 2)
                           or (name == "encoder_hidden_states" and index == 1)) else size
                    for index, size in enumerate(tensor.shape)]
            shapes[port] = ov.PartialShape(dims)
        model.reshape(shapes)
    if weight_compression:
        from modules.quantization.nncf_int8 import compress_ov_model

        model = compress_ov_model(model, weight_compression)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(".staging-" + target.name)
    ov.save_model(model, str(staging), compress_to_fp16=False)
    staging.with_suffix(".bin").replace(target.with_suffix(".bin"))
    staging.replace(target)  # the .xml last: its presence marks a complete IR
    log.info("converted %s to OpenVINO IR in %.1fs", target.stem, time.perf_counter() - started)
    return model


class OpenVinoBackend(ExecutionBackend):
    name: ClassVar[str] = "openvino"

    def __init__(self, *, device: str = "CPU", include_vae: bool = True, threads: int | None = None,
                 weight_compression: str | None = None) -> None:
        self.device = device
        self.include_vae = include_vae
        self.threads = threads
        self.weight_compression = weight_compression

    def is_available(self) -> tuple[bool, str]:
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False, "the openvino package is not installed (pip install openvino)"
        return True, "openvino is installed"

    def available_devices(self) -> list[str]:
        import openvino as ov

        return list(ov.Core().available_devices)

    def compile_config(self, precision: str) -> dict[str, str]:
        if precision not in PRECISION_HINTS:
            raise UnsupportedError(f"OpenVINO backend: precision {precision!r} is not one of {list(PRECISION_HINTS)}")
        config: dict[str, str] = {"PERFORMANCE_HINT": "LATENCY"}
        hint = PRECISION_HINTS[precision]
        if hint is not None:
            config["INFERENCE_PRECISION_HINT"] = hint
        if self.device.startswith("CPU"):
            # PyTorch shares these cores in the same process (text encoder, VAE encode, the other auto routes):
            # OpenVINO's default thread pinning holds its stream threads to cores the PyTorch pool also uses
            config["ENABLE_CPU_PINNING"] = "NO"
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = str(self.threads)
        return config

    def prepare(self, loaded: Any, *, cache_dir: Path, precision: str = "auto",
                shape_policy: ShapePolicy = ShapePolicy(), device: str | None = None,
                include_vae: bool | None = None, weight_compression: str | None = None) -> None:
        pipe = loaded.pipe
        unet, vae = pipe.unet, pipe.vae
        graph, vae_graph = self.build_graphs(loaded, unet, vae, cache_dir=cache_dir, precision=precision,
                                             shape_policy=shape_policy, device=device, include_vae=include_vae,
                                             weight_compression=weight_compression)
        install_component(pipe, "unet", GraphUNet(unet, graph, self.name))
        if vae_graph is not None:
            install_component(pipe, "vae", GraphVae(vae, vae_graph, self.name))

    def build_graphs(self, loaded: Any, unet: Any, vae: Any, *, cache_dir: Path, precision: str = "auto",
                     shape_policy: ShapePolicy = ShapePolicy(), device: str | None = None,
                     include_vae: bool | None = None, weight_compression: str | None = None
                     ) -> tuple[OvGraph, OvGraph | None]:
        """Convert (or read the cached IR of) ``unet`` and the VAE decoder and compile them; installs nothing, so
        ``backend: auto`` can run this in a background thread while the PyTorch modules keep serving."""
        import openvino as ov

        self.require_available()
        device = device or self.device
        compression = weight_compression if weight_compression is not None else self.weight_compression
        config = self.compile_config(precision)
        # The IR holds f32 weights; the precision is a compile-time hint, so one IR serves every precision.
        ir_key = export_key(loaded, shape_policy, "ir" + (f"-{compression}" if compression else ""))
        folder = Path(cache_dir) / "openvino" / ir_key
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(folder / "compiled")})
        started = time.perf_counter()
        inputs = unet_example_inputs(unet, shape_policy, torch.float32)
        model = convert_to_ir(UNetExportAdapter(_float_copy(unet)), inputs, folder / "unet.xml", shape_policy,
                              compression)
        graph = OvGraph(core.compile_model(model, device, config), list(inputs))
        del model
        vae_graph = None
        if self.include_vae if include_vae is None else include_vae:
            if shape_policy.kind == "static":
                shape = (max(1, shape_policy.batch // 2), vae.config.latent_channels,
                         shape_policy.height // 8, shape_policy.width // 8)
            else:
                shape = (1, vae.config.latent_channels, 8, 8)
            latents = {"latents": torch.randn(*shape, generator=torch.Generator().manual_seed(0))}
            vae_model = convert_to_ir(VaeDecoderExportAdapter(_float_copy(vae)), latents, folder / "vae_decoder.xml",
                                      shape_policy)
            vae_graph = OvGraph(core.compile_model(vae_model, device, config), ["latents"])
        log.info("openvino backend ready in %.1fs (%s on %s, %s)", time.perf_counter() - started, folder.name,
                 device, config)
        return graph, vae_graph


def _float_copy(module: torch.nn.Module) -> torch.nn.Module:
    """Conversion traces in f32; a half-precision pipeline is copied rather than converted in place."""
    if module.dtype == torch.float32:
        return module
    import copy

    return copy.deepcopy(module).float()
