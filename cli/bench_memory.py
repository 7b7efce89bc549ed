"""Peak resident memory of one txt2img job per execution path, each path in a process of its own.

``ru_maxrss`` is a per-process high-water mark, so paths measured in one process hide each other; here every path
runs in a fresh child process (``python cli/bench_memory.py --child N``) that loads the model, runs one job and
reports its RSS after load, after the job and its peak. The model is the ``--family`` architecture from
``configs/`` with random weights (the cost is the architecture), built once into ``--cache-dir``.

Paths, in order (the OpenVINO and ``auto`` pairs share a data dir, so the second of each reads the first's
export):

* plain diffusers ``StableDiffusionPipeline`` fp32, what a diffusers user writes;
* Easel ``backend: torch`` fp32 and bf16;
* Easel ``backend: openvino`` bf16 on a fresh data dir (the export runs at load), then from its cache;
* Easel's default (``backend: auto``) on a fresh data dir: a job while the export runs in the background, the
  export awaited, a second job on the exported route; then a second start on the same data dir.

Steps do not change the peak after the first (the same activations every step), so jobs are short by default.

Example: ``venv/bin/python cli/bench_memory.py --family sd15 --size 512 --steps 2 --out .bench/memory.json``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (label, options, data dir name; None: plain diffusers)
PATHS: list[tuple[str, dict[str, str] | None, str]] = [
    ("plain diffusers fp32", None, ""),
    ("torch fp32", {"backend": "torch", "execution_precision": "fp32"}, "data-torch-fp32"),
    ("torch bf16", {"backend": "torch", "execution_precision": "bf16"}, "data-torch-bf16"),
    ("openvino bf16, exporting at load", {"backend": "openvino", "execution_precision": "bf16"}, "data-openvino"),
    ("openvino bf16, from its cache", {"backend": "openvino", "execution_precision": "bf16"}, "data-openvino"),
    ("auto (default), fresh install: job, export, job", {}, "data-auto"),
    ("auto (default), second start", {}, "data-auto"),
]
RESULT_TAG = "BENCH_MEMORY_RESULT "


def _rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(index: int, args: argparse.Namespace) -> dict[str, Any]:
    """Measure path ``index`` in this (fresh) process."""
    from modules.core.lazy_imports import hide_from_library_probes

    hide_from_library_probes()  # as the server's start does
    import torch

    label, options, data_name = PATHS[index]
    work = Path(args.cache_dir)
    folder = work / "models" / f"{args.family}-random"
    prompt = "a red circle on a blue background"
    out: dict[str, Any] = {"path": label, "rss_start_mib": round(_rss_mib())}
    started = time.perf_counter()
    if options is None:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(str(folder), torch_dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        out["load_s"] = round(time.perf_counter() - started, 1)
        out["rss_after_load_mib"] = round(_rss_mib())
        begun = time.perf_counter()
        pipe(prompt, num_inference_steps=args.steps, width=args.size, height=args.size, guidance_scale=7.0,
             generator=torch.Generator().manual_seed(1))
        out["jobs_s"] = [round(time.perf_counter() - begun, 1)]
        out["rss_after_job_mib"] = round(_rss_mib())
        out["peak_rss_mib"] = round(_peak_mib())
        return out

    from cli.bench import _PipelineServices
    from modules.core.settings import Options
    from modules.processing.params import Txt2ImgParams
    from modules.processing.run import ProcessingRun

    services = _PipelineServices(work / "models", work / data_name, Options(**options))
    loaded = services.manager.ensure_loaded(folder.name)
    record = services.execution.applied[loaded.pipe]
    out["load_s"] = round(time.perf_counter() - started, 1)
    out["rss_after_load_mib"] = round(_rss_mib())
    out["backend"] = record.backend
    out["errors"] = list(record.errors)
    params = Txt2ImgParams(prompt=prompt, steps=args.steps, width=args.size, height=args.size, seed=1,
                           sampler_name="Euler", cfg_scale=7.0)

    def job() -> None:
        begun = time.perf_counter()
        services.generation.processor.process(ProcessingRun(params, services.settings.options))
        out.setdefault("jobs_s", []).append(round(time.perf_counter() - begun, 1))

    job()
    out["rss_after_job_mib"] = round(_rss_mib())
    export = record.adaptive.export if record.adaptive is not None else None
    if export is not None:
        export.wait()
        out["export"] = {"route": export.route_name, "state": export.state, "error": export.error,
                         "seconds": round(export.finished - export.started, 1)}
        if "fresh install" in label:  # the job after the export joined, on its route
            job()
            out["rss_after_second_job_mib"] = round(_rss_mib())
    current = loaded.pipe
    out["routes_used"] = {name: dict(getattr(current, name).used) for name in ("unet", "vae")
                          if hasattr(getattr(current, name), "used")}
    out["peak_rss_mib"] = round(_peak_mib())
    return out


def bench_memory(args: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Every path in ``PATHS`` in its own child process, one after the other."""
    from cli.bench import build_random_pipeline, cpu_description

    work = Path(args.cache_dir or tempfile.mkdtemp(prefix="easel-bench-memory-"))
    folder = work / "models" / f"{args.family}-random"
    if not (folder / "model_index.json").exists():
        build_random_pipeline(args.family, folder, args.channels)
    results: dict[str, Any] = {"family": args.family, "size": args.size, "steps": args.steps,
                               "cpu": cpu_description(), "paths": []}
    for index in args.paths if args.paths is not None else range(len(PATHS)):
        label = PATHS[index][0]
        command = [sys.executable, str(Path(__file__).resolve()), "--child", str(index), "--cache-dir", str(work),
                   "--family", args.family, "--size", str(args.size), "--steps", str(args.steps)]
        if args.threads:
            command += ["--threads", str(args.threads)]
        begun = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=os.environ.copy(),
                              timeout=args.timeout_s)
        line = next((text for text in done.stdout.splitlines() if text.startswith(RESULT_TAG)), None)
        row: dict[str, Any] = (json.loads(line[len(RESULT_TAG):]) if line is not None else
                               {"path": label, "error": (done.stderr or "")[-2000:], "returncode": done.returncode})
        row["process_s"] = round(time.perf_counter() - begun, 1)
        results["paths"].append(row)
        log(json.dumps(row))
    return results


def markdown(results: dict[str, Any]) -> str:
    cpu = results["cpu"]
    lines = [f"{results['family']} architecture (random weights), {results['size']}², {results['steps']} steps per "
             f"job; CPU {cpu['model']} (native bf16: {cpu['native_bf16']}); one process per path", "",
             "| path | load s | RSS after load MiB | RSS after job MiB | peak RSS MiB | routes (calls) |",
             "|---|---|---|---|---|---|"]
    for row in results["paths"]:
        if "error" in row:
            lines.append(f"| {row['path']} | failed: {row['error'].splitlines()[-1] if row['error'] else ''} "
                         "| | | | |")
            continue
        routes = "; ".join(f"{name}: {calls}" for name, calls in row.get("routes_used", {}).items())
        lines.append(f"| {row['path']} | {row['load_s']} | {row['rss_after_load_mib']} | {row['rss_after_job_mib']} "
                     f"| {row['peak_rss_mib']} | {routes} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="sd15")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--channels", type=int, nargs="+", default=None, help="UNet block widths (default: family)")
    parser.add_argument("--paths", type=int, nargs="+", default=None, help="indices into the path list (default: all)")
    parser.add_argument("--cache-dir", default=None, help="where the random model and the data dirs go")
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="per path")
    parser.add_argument("--out", default=None, help="also write the JSON (and a .md table) here")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child is not None:
        print(RESULT_TAG + json.dumps(child(args.child, args)), flush=True)
        return 0

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = bench_memory(args, log)
    print(json.dumps(result, indent=2))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        out.with_suffix(".md").write_text(markdown(result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
