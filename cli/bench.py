"""Benchmarks, measured rather than asserted.

Two modes:

* end-to-end (default): Easel txt2img through :class:`modules.processing.processor.Processor` ÷ plain diffusers
  ``pipe()`` for the same model, steps and size; runs interleaved, median ratio printed. Model: the embedded
  ``models/Stable-diffusion/easel-shapes-v1`` when present, else a tiny one built on the fly.
* ``--unet``: seconds per UNet step per backend/precision and the ratio against plain PyTorch fp32, on an SD 1.5
  architecture UNet (``configs/sd15/unet``, random weights: the cost is the architecture) at the given sizes;
  interleaved reps, medians, peak RSS, and the machine's measured fp32/bf16 matmul peak so achieved FLOP/s can
  be compared with it (an SD 1.5 UNet step is ~1.6 TFLOP at 512², UNet batch 2; it scales with pixel count).

Example: ``venv/bin/python cli/bench.py --unet --sizes 256 --batch 2 --reps 2 --threads 1``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SD15_TFLOP_512_B2 = 1.6  # per UNet step, 512x512, UNet batch 2


def matmul_peak(dtype_name: str, size: int = 2048, reps: int = 3) -> float:
    """GFLOP/s of a large square matmul: the ceiling a UNet step can approach on this machine."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * size ** 3 / min(times) / 1e9


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Loaded:
    """The smallest LoadedModel look-alike backends need: a pipe-like holder and an info with a hash."""

    def __init__(self, unet: Any, key: str) -> None:
        from types import SimpleNamespace

        self.pipe = SimpleNamespace(unet=unet)
        self.info = SimpleNamespace(sha256=key, path=key)


def bench_unet(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from diffusers import UNet2DConditionModel

    from modules.backends.base import ShapePolicy
    from modules.backends.registry import get_backend

    config = json.loads((ROOT / "configs" / "sd15" / "unet" / "config.json").read_text())
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(config).eval()
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="easel-bench-"))
    results: dict[str, Any] = {"threads": args.threads, "batch": args.batch,
                               "matmul_peak_gflops": {name: round(matmul_peak(name), 1) for name in ("fp32", "bf16")},
                               "sizes": {}}
    for size in args.sizes:
        variants: dict[str, Any] = {}
        for spec in args.backends:
            name, _, precision = spec.partition(":")
            precision = precision or "fp32"
            holder = _Loaded(unet, "sd15-random")
            policy = ShapePolicy("static", args.batch, size, size) if args.static else ShapePolicy()
            started = time.perf_counter()
            if name != "plain":
                kwargs: dict[str, Any] = {"include_vae": False} if name in ("onnxruntime", "openvino") else {}
                if name in ("onnxruntime", "openvino"):
                    get_backend(name).threads = args.threads  # type: ignore[attr-defined]
                get_backend(name).prepare(holder, cache_dir=cache, precision=precision, shape_policy=policy,
                                          **kwargs)
            variants[spec] = {"module": holder.pipe.unet, "prepare_s": round(time.perf_counter() - started, 1),
                              "times": []}
            if name != "plain":
                # keep the prepared wrapper, give the holder's unet back for the next variant
                from modules.backends.base import restore_components

                wrapper = holder.pipe.unet
                restore_components(holder.pipe)
                variants[spec]["module"] = wrapper
        sample = torch.randn(args.batch, 4, size // 8, size // 8)
        states = torch.randn(args.batch, 77, 768)
        with torch.no_grad():
            for entry in variants.values():  # warm-up call (first-call allocation, lazy compile)
                entry["module"](sample, torch.tensor(500.0), encoder_hidden_states=states, return_dict=False)
            for _ in range(args.reps):  # interleaved: contention hits every variant alike
                for entry in variants.values():
                    started = time.perf_counter()
                    entry["module"](sample, torch.tensor(500.0), encoder_hidden_states=states, return_dict=False)
                    entry["times"].append(time.perf_counter() - started)
        base = statistics.median(variants["plain"]["times"]) if "plain" in variants else None
        tflop = SD15_TFLOP_512_B2 * (size / 512) ** 2 * args.batch / 2
        rows = {}
        for spec, entry in variants.items():
            median = statistics.median(entry["times"])
            ratio = round(base / median, 2) if base else None
            rows[spec] = {"s_per_step": round(median, 3), "ratio_vs_plain_fp32": ratio,
                          "gflops": round(tflop * 1000 / median, 1), "prepare_s": entry["prepare_s"],
                          "times": [round(value, 3) for value in entry["times"]]}
        results["sizes"][str(size)] = rows
    results["peak_rss_mib"] = round(peak_rss_mib())
    return results


def bench_end_to_end(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np  # noqa: F401
    import torch

    from modules.core.settings import Options
    from modules.devices.select import select_device
    from modules.models.catalog import CheckpointCatalog, HashCache
    from modules.models.manager import ModelManager
    from modules.processing.params import Txt2ImgParams
    from modules.processing.processor import Processor
    from modules.processing.run import ProcessingRun
    from modules.processing.samplers import build_default_registry

    work = Path(tempfile.mkdtemp(prefix="easel-bench-"))
    models = ROOT / "models" / "Stable-diffusion"
    if not (models / "easel-shapes-v1").exists():
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import build_tiny_sd

        models = work / "Stable-diffusion"
        build_tiny_sd(models / "tiny-sd")
    catalog = CheckpointCatalog(models, HashCache(work / "hashes.json"))
    catalog.refresh()
    device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
    model = ModelManager(catalog, device).ensure_loaded(None)
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model)
    fields = {"prompt": "a red circle on a blue background", "steps": args.steps, "width": args.size,
              "height": args.size, "seed": 1, "sampler_name": "Euler", "cfg_scale": 7.0}
    ratios = []
    for _ in range(args.reps):
        started = time.perf_counter()
        processor.process(ProcessingRun(Txt2ImgParams(**fields), Options()))
        easel = time.perf_counter() - started
        started = time.perf_counter()
        model.pipe(fields["prompt"], num_inference_steps=args.steps, width=args.size, height=args.size,
                   guidance_scale=7.0, generator=torch.Generator().manual_seed(1))
        plain = time.perf_counter() - started
        ratios.append(easel / plain)
    return {"model": model.info.name, "steps": args.steps, "size": args.size,
            "easel_over_diffusers_median": round(statistics.median(ratios), 3),
            "ratios": [round(value, 3) for value in ratios]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet", action="store_true", help="per-backend UNet step benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--backends", nargs="+", default=["plain", "torch:bf16", "onnxruntime:fp32",
                                                          "openvino:fp32", "openvino:auto"],
                        help="name[:precision]; 'plain' is diffusers PyTorch fp32, the baseline")
    parser.add_argument("--batch", type=int, default=2, help="UNet batch (2 = one image with CFG)")
    parser.add_argument("--static", action="store_true", help="static shape policy for exports")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64, help="end-to-end image size")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = bench_unet(args) if args.unet else bench_end_to_end(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
