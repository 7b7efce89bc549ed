"""ONNX export of a UNet / VAE decoder with ``torch.onnx.export``, shared by ONNX Runtime and TensorRT.

Why the TorchScript exporter (``dynamo=False``): with torch 2.13 the dynamo exporter needs ``onnxscript`` and
traces diffusers' UNet into a graph with data-dependent guards on the latent size; the TorchScript exporter
exports a diffusers UNet with dynamic batch/height/width in seconds and matches PyTorch within 2e-6 (fp32).
Exports are written to a temporary folder and renamed into place, so an interrupted export never leaves a
half-written cache entry that a later start would load.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from modules.backends.base import ShapePolicy, UNetExportAdapter, VaeDecoderExportAdapter, unet_example_inputs

log = logging.getLogger(__name__)

OPSET = 17


def _export(module: torch.nn.Module, inputs: dict[str, torch.Tensor], target: Path,
            dynamic_axes: dict[str, dict[int, str]] | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python-side shape checks are expected
        torch.onnx.export(module, tuple(inputs.values()), str(target), dynamo=False, input_names=list(inputs),
                          output_names=["out"], dynamic_axes=dynamic_axes, opset_version=OPSET,
                          do_constant_folding=True)


def export_unet(unet: Any, folder: Path, shape_policy: ShapePolicy, dtype: torch.dtype) -> Path:
    """``folder/unet.onnx`` (weights in an external-data file when over 2 GB, as ONNX requires)."""
    target = folder / "unet.onnx"
    if target.exists():
        return target
    started = time.perf_counter()
    inputs = unet_example_inputs(unet, shape_policy, dtype)
    dynamic = None
    if shape_policy.kind == "dynamic":
        dynamic = {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                   "encoder_hidden_states": {0: "batch", 1: "tokens"}, "out": {0: "batch", 2: "height", 3: "width"}}
        for name in ("text_embeds", "time_ids"):
            if name in inputs:
                dynamic[name] = {0: "batch"}
    _atomic_export(UNetExportAdapter(unet).eval(), inputs, target, dynamic)
    log.info("exported UNet to ONNX in %.1fs: %s", time.perf_counter() - started, target)
    return target


def export_vae_decoder(vae: Any, folder: Path, shape_policy: ShapePolicy, dtype: torch.dtype) -> Path:
    target = folder / "vae_decoder.onnx"
    if target.exists():
        return target
    channels = vae.config.latent_channels
    if shape_policy.kind == "static":
        shape = (shape_policy.batch // 2 or 1, channels, shape_policy.height // 8, shape_policy.width // 8)
    else:
        shape = (1, channels, 8, 8)
    inputs = {"latents": torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)}
    dynamic = None
    if shape_policy.kind == "dynamic":
        dynamic = {"latents": {0: "batch", 2: "height", 3: "width"}, "out": {0: "batch", 2: "height", 3: "width"}}
    _atomic_export(VaeDecoderExportAdapter(vae).eval(), inputs, target, dynamic)
    return target


def _atomic_export(module: torch.nn.Module, inputs: dict[str, torch.Tensor], target: Path,
                   dynamic: dict[str, dict[int, str]] | None) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        with torch.no_grad():
            _export(module, inputs, staging / target.name, dynamic)
        produced = sorted(staging.iterdir(), key=lambda path: path.name == target.name)
        for path in produced:  # external-data files first, the graph last: its presence marks a complete export
            path.replace(target.parent / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
