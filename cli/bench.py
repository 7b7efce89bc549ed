"""Benchmarks, measured rather than asserted.

Three modes:

* end-to-end (default): Easel txt2img through :class:`modules.processing.processor.Processor` ÷ plain diffusers
  ``pipe()`` for the same model, steps and size; runs interleaved, median ratio printed. Model: the embedded
  ``models/Stable-diffusion/easel-shapes-v1`` when present, else a tiny one built on the fly.
* ``--unet``: seconds per UNet step per backend/precision and the ratio against plain diffusers PyTorch fp32, on a
  UNet built from ``configs/<family>/unet`` (default sd15, random weights: the cost is the architecture) or from a
  model folder (``--unet-config models/Stable-diffusion/easel-shapes-v1/unet``, its weights loaded). Every variant
  is prepared once (dynamic shapes) and then run interleaved with the others, ``--reps`` times per size after one
  warm-up call; medians are reported with the raw times. FLOPs per step are counted (matmuls, convolutions,
  attention) by running the UNet on the meta device under ``torch.utils.flop_counter``, and the machine's fp32 and
  bf16 matmul peak is measured with the same thread count, so each row states achieved GFLOP/s and its share of
  the peak. A variant whose step is predicted (from its time at the previous size, or a 64² probe, scaled by
  FLOPs) to exceed ``--max-step-s`` is skipped at that size and says so: emulated bf16 on CPUs without bf16
  hardware is two orders of magnitude slower than fp32. Peak RSS and each variant's resident-memory growth are
  reported. ``openvino:auto`` runs OpenVINO's default precision hint for the CPU; where that equals an explicit
  variant's hint the compiled model is shared and the row says so.

* ``--workers``: the job queue over 1, 2 and 4 Ray workers running simulated (sleep-per-step) jobs: jobs/s,
  dispatch overhead per job and the time from a worker's death to its job running again (``cli/bench_workers.py``).

Example: ``venv/bin/python cli/bench.py --unet --sizes 256 512 --batch 2 --reps 3 --threads 1 --out .bench/x.json``
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_UNET_BACKENDS = ["plain", "onnxruntime:fp32", "openvino:fp32", "openvino:auto", "torch:bf16"]
PROBE_SIZE = 64


def matmul_peak(dtype_name: str, size: int = 1024, budget_s: float = 6.0) -> float:
    """GFLOP/s of a square matmul (best of short calls within ``budget_s``): the ceiling for a UNet step.

    Best-of short calls, so on a shared machine this is the hardware's rate when it gets the core, not an average.

    Emulated dtypes (bf16 without hardware support) are measured on a smaller matrix so this stays bounded.
    """
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    best = 0.0
    while True:
        a = torch.randn(size, size, dtype=dtype)
        b = torch.randn(size, size, dtype=dtype)
        started = time.perf_counter()
        a @ b  # warm-up: allocation, kernel selection
        first = time.perf_counter() - started
        if first > budget_s / 3 and size > 256:
            size //= 2
            continue
        spent = first
        while spent < budget_s:
            started = time.perf_counter()
            a @ b
            elapsed = time.perf_counter() - started
            spent += elapsed
            best = max(best, 2 * size ** 3 / elapsed / 1e9)
            if spent + elapsed > budget_s:
                break
        return best


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2 ** 20


def cpu_description() -> dict[str, Any]:
    import torch

    from modules.backends.auto import probe_cpu

    cpu = probe_cpu()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx_vnni")
    return {"model": model, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": cpu.native_bf16, "flags": [name for name in wanted if name in cpu.flags]}


class _Loaded:
    """The smallest LoadedModel look-alike backends need: a pipe-like holder and an info with a hash."""

    def __init__(self, unet: Any, key: str) -> None:
        from types import SimpleNamespace

        self.pipe = SimpleNamespace(unet=unet)
        self.info = SimpleNamespace(sha256=key, path=key)


def unet_config(source: str, channels: list[int] | None) -> tuple[dict[str, Any], Path | None]:
    """The UNet config to bench (a family name under configs/, or a folder with config.json) and its weights."""
    folder = Path(source)
    if not (folder / "config.json").exists():
        folder = ROOT / "configs" / source / "unet"
    config = json.loads((folder / "config.json").read_text())
    weights = folder if any(folder.glob("diffusion_pytorch_model*.safetensors")) else None
    if channels:
        config["block_out_channels"] = list(channels)
        weights = None  # a rescaled architecture has no matching weights
    return config, weights


def unet_step_flops(config: dict[str, Any], batch: int, size: int) -> float:
    """FLOPs of one UNet call, counted on the meta device (no memory, no compute)."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from modules.backends.base import ShapePolicy, unet_example_inputs

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(config)
    inputs = unet_example_inputs(unet, ShapePolicy("static", batch, size, size), torch.float32)
    meta = {name: torch.empty_like(value, device="meta") for name, value in inputs.items()}
    added = {name: meta.pop(name) for name in ("text_embeds", "time_ids") if name in meta} or None
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        unet(meta["sample"], meta["timestep"], encoder_hidden_states=meta["encoder_hidden_states"],
             added_cond_kwargs=added)
    return float(counter.get_total_flops())


def _openvino_default_hint() -> str:
    import openvino as ov

    hint = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")
    return {"f32": "fp32", "float32": "fp32", "bf16": "bf16", "bfloat16": "bf16", "f16": "fp16"}.get(
        str(getattr(hint, "get_type_name", lambda: hint)()), str(hint))


def prepare_variant(spec: str, unet: Any, cache: Path, policy: Any, threads: int | None) -> tuple[Any, str]:
    """A callable UNet for ``spec`` (``plain`` or ``backend:precision``) and a note on how it was made."""
    from modules.backends.base import restore_components
    from modules.backends.onnxruntime_backend import OnnxRuntimeBackend
    from modules.backends.openvino_backend import OpenVinoBackend
    from modules.backends.registry import get_backend

    name, _, precision = spec.partition(":")
    precision = precision or "fp32"
    if name == "plain":
        return unet, "diffusers UNet2DConditionModel as loaded (fp32, default attention processor)"
    backend: Any
    kwargs: dict[str, Any] = {}
    if name == "onnxruntime":
        backend, kwargs = OnnxRuntimeBackend(threads=threads), {"include_vae": False}
    elif name == "openvino":
        backend, kwargs = OpenVinoBackend(threads=threads), {"include_vae": False}
    else:
        backend = get_backend(name)
    # torch variants change layout / attention processors in place: they get their own copy of the weights
    source = copy.deepcopy(unet) if name == "torch" and precision == "fp32" else unet
    # cache key: the architecture plus the weights' identity, so reruns reuse exports and other UNets do not
    identity = json.dumps({"config": dict(unet.config), "weights": str(getattr(unet, "_bench_weights", "random"))},
                          sort_keys=True, default=str)
    holder = _Loaded(source, "bench-" + hashlib.sha256(identity.encode()).hexdigest())
    backend.prepare(holder, cache_dir=cache, precision=precision, shape_policy=policy, **kwargs)
    wrapper = holder.pipe.unet
    restore_components(holder.pipe)  # the wrapper keeps running its graph; the shared UNet is left untouched
    return wrapper, f"{type(backend).__name__} prepared with precision {precision}"


def _call(module: Any, sample: Any, timestep: Any, states: Any) -> float:
    started = time.perf_counter()
    module(sample, timestep, encoder_hidden_states=states, return_dict=False)
    return time.perf_counter() - started


def bench_unet(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    import torch
    from diffusers import UNet2DConditionModel

    from modules.backends.base import ShapePolicy

    config, weights = unet_config(args.unet_config, args.channels)
    torch.manual_seed(0)
    if weights is not None:
        unet = UNet2DConditionModel.from_pretrained(str(weights)).float().eval()
        unet._bench_weights = str(weights.resolve())
    else:
        unet = UNet2DConditionModel.from_config(config).eval()
    params = sum(parameter.numel() for parameter in unet.parameters())
    cache = Path(args.cache_dir or tempfile.mkdtemp(prefix="easel-bench-"))
    threads = torch.get_num_threads()
    log(f"UNet {args.unet_config} {params / 1e6:.1f} M parameters, {threads} thread(s); measuring matmul peaks")
    peaks = {name: round(matmul_peak(name, budget_s=args.peak_budget_s), 1) for name in ("fp32", "bf16")}
    log(f"matmul peak GFLOP/s: {peaks}")
    results: dict[str, Any] = {
        "unet": str(args.unet_config), "block_out_channels": config["block_out_channels"],
        "unet_params_m": round(params / 1e6, 1), "threads": threads, "batch": args.batch, "reps": args.reps,
        "cpu": cpu_description(), "matmul_peak_gflops": peaks, "variants": {}, "sizes": {}}
    cross_dim = config["cross_attention_dim"]
    cross_dim = cross_dim[0] if isinstance(cross_dim, list) else cross_dim
    states = torch.randn(args.batch, 77, cross_dim)
    timestep = torch.tensor(500.0)
    modules: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    for spec in args.backends:
        name, _, precision = spec.partition(":")
        if name == "openvino" and precision == "auto":
            default = _openvino_default_hint()
            twin = next((other for other in modules if other == f"openvino:{default}"), None)
            if twin is not None:
                aliases[spec] = twin
                results["variants"][spec] = {"note": f"OpenVINO's default hint here is {default}: same compiled "
                                                     f"model as {twin}"}
                continue
        policy = ShapePolicy("static", args.batch, args.sizes[0], args.sizes[0]) if args.static else ShapePolicy()
        before = rss_mib()
        started = time.perf_counter()
        try:
            modules[spec], note = prepare_variant(spec, unet, cache, policy, args.threads)
        except Exception as exc:  # a backend that cannot run here is reported, not fatal
            results["variants"][spec] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"{spec}: {exc}")
            continue
        results["variants"][spec] = {"prepare_s": round(time.perf_counter() - started, 1), "note": note,
                                     "rss_growth_mib": round(rss_mib() - before)}
        log(f"{spec}: prepared in {results['variants'][spec]['prepare_s']} s")
    reference: dict[str, tuple[float, float]] = {}  # spec -> (seconds, flops) of its latest measured size
    with torch.no_grad():
        for size in args.sizes:
            flops = unet_step_flops(config, args.batch, size)
            sample = torch.randn(args.batch, config["in_channels"], size // 8, size // 8)
            active: dict[str, Any] = {}
            skipped: dict[str, str] = {}
            for spec, module in modules.items():
                if spec not in reference and not args.static:  # a static graph takes only its own shape
                    probe = torch.randn(args.batch, config["in_channels"], PROBE_SIZE // 8, PROBE_SIZE // 8)
                    _call(module, probe, timestep, states)
                    reference[spec] = (_call(module, probe, timestep, states),
                                       unet_step_flops(config, args.batch, PROBE_SIZE))
                seconds, ref_flops = reference.get(spec, (0.0, 1.0))
                predicted = seconds * flops / ref_flops
                if predicted > args.max_step_s:
                    skipped[spec] = f"predicted {predicted:.0f} s/step > --max-step-s {args.max_step_s:g}"
                    log(f"{size}: {spec} skipped ({skipped[spec]})")
                else:
                    active[spec] = module
            times: dict[str, list[float]] = {spec: [] for spec in active}
            for spec, module in active.items():  # warm-up at this size: first-call allocation, lazy compile
                log(f"{size}: warm-up {spec}")
                _call(module, sample, timestep, states)
            for rep in range(args.reps):  # interleaved: contention from other processes hits every variant alike
                for spec, module in active.items():
                    times[spec].append(_call(module, sample, timestep, states))
                    log(f"{size}: rep {rep + 1} {spec} {times[spec][-1]:.2f} s")
            base = statistics.median(times["plain"]) if times.get("plain") else None
            rows: dict[str, Any] = {}
            for spec, values in times.items():
                median = statistics.median(values)
                reference[spec] = (median, flops)
                gflops = flops / median / 1e9
                rows[spec] = {"s_per_step": round(median, 3),
                              "ratio_vs_plain_fp32": round(base / median, 2) if base else None,
                              "gflops": round(gflops, 1),
                              "pct_of_fp32_peak": round(100 * gflops / peaks["fp32"], 1),
                              "pct_of_bf16_peak": round(100 * gflops / peaks["bf16"], 1),
                              "times": [round(value, 3) for value in values]}
            for spec, twin in aliases.items():
                rows[spec] = {"same_as": twin}
            for spec, reason in skipped.items():
                rows[spec] = {"skipped": reason}
            results["sizes"][str(size)] = {"tflop_per_step": round(flops / 1e12, 3), "rows": rows}
    results["peak_rss_mib"] = round(peak_rss_mib())
    return results


def markdown_table(results: dict[str, Any]) -> str:
    """The ``--unet`` result as a Markdown table (one row per size and variant)."""
    lines = [f"SD-architecture UNet `{results['unet']}` ({results['unet_params_m']} M parameters), batch "
             f"{results['batch']}, {results['threads']} thread(s), {results['reps']} interleaved reps, medians; "
             f"CPU {results['cpu']['model']} ({', '.join(results['cpu']['flags'])}; native bf16: "
             f"{results['cpu']['native_bf16']}); matmul peak fp32 {results['matmul_peak_gflops']['fp32']} / bf16 "
             f"{results['matmul_peak_gflops']['bf16']} GFLOP/s; peak RSS {results.get('peak_rss_mib')} MiB", "",
             "| size | variant | s/step | × plain fp32 | GFLOP/s | % fp32 peak | prepare s |",
             "|---|---|---|---|---|---|---|"]
    for size, block in results["sizes"].items():
        for spec, row in block["rows"].items():
            prepare = results["variants"].get(spec, {}).get("prepare_s", "")
            if "s_per_step" in row:
                lines.append(f"| {size}² | {spec} | {row['s_per_step']} | {row['ratio_vs_plain_fp32']} | "
                             f"{row['gflops']} | {row['pct_of_fp32_peak']} | {prepare} |")
            else:
                lines.append(f"| {size}² | {spec} | {row.get('skipped') or 'same as ' + row['same_as']} | | | | |")
    return "\n".join(lines)


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
    parser.add_argument("--unet-config", default="sd15",
                        help="family under configs/ (random weights) or a UNet folder (its weights are loaded)")
    parser.add_argument("--channels", type=int, nargs="+", default=None,
                        help="override block_out_channels (a scaled model of the same architecture)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--backends", nargs="+", default=DEFAULT_UNET_BACKENDS,
                        help="name[:precision]; 'plain' is diffusers PyTorch fp32, the baseline")
    parser.add_argument("--batch", type=int, default=2, help="UNet batch (2 = one image with CFG)")
    parser.add_argument("--static", action="store_true", help="static shape policy for exports (first size)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="threads for PyTorch, ONNX Runtime and OpenVINO")
    parser.add_argument("--max-step-s", type=float, default=300.0, help="skip a variant predicted slower than this")
    parser.add_argument("--peak-budget-s", type=float, default=6.0, help="seconds per matmul-peak measurement")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--out", default=None, help="also write the JSON result (and a .md table) here")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=64, help="end-to-end image size")
    parser.add_argument("--workers", action="store_true", help="job dispatch over 1, 2 and 4 Ray workers")
    parser.add_argument("--worker-counts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--jobs", type=int, default=48, help="--workers: jobs per round")
    parser.add_argument("--step-seconds", type=float, default=0.02, help="--workers: simulated seconds per step")
    parser.add_argument("--kills", type=int, default=3, help="--workers: worker deaths to time")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.workers:
        from cli.bench_workers import bench_workers

        result = bench_workers(tuple(args.worker_counts), jobs=args.jobs, steps=args.steps,
                               step_seconds=args.step_seconds, kills=args.kills)
    else:
        result = bench_unet(args, log) if args.unet else bench_end_to_end(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        if args.unet:
            out.with_suffix(".md").write_text(markdown_table(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
