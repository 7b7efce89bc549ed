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

Peak resident memory per execution path, each in a process of its own: ``cli/bench_memory.py``.

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

        self.pipe = SimpleNamespace(unet=unet, vae=None)  # UNet only: backends are asked not to export a VAE
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


def build_random_pipeline(family: str, folder: Path, channels: list[int] | None = None) -> Path:
    """A diffusers folder of ``configs/<family>`` (text encoder, UNet, VAE, scheduler, CLIP tokenizer) with random
    weights: what the architecture costs, without a download. ``channels`` rescales the UNet only."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    configs = ROOT / "configs" / family
    torch.manual_seed(0)
    unet_cfg, _ = unet_config(family, channels)
    with torch.no_grad():
        unet = diffusers.UNet2DConditionModel.from_config(unet_cfg)
        vae = diffusers.AutoencoderKL.from_config(json.loads((configs / "vae" / "config.json").read_text()))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_json_file(str(configs / "text_encoder" / "config.json")))
    scheduler = diffusers.EulerDiscreteScheduler.from_config(
        json.loads((configs / "scheduler" / "scheduler_config.json").read_text()))
    tokenizer = CLIPTokenizer.from_pretrained(str(ROOT / "configs" / "tokenizers" / "clip"))
    pipe = diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


class _PipelineServices:
    """The services Easel's execution setup needs, built the way webui's warm-up builds them (default options)."""

    def __init__(self, models: Path, data: Path, options: Any = None) -> None:
        from modules.core.settings import CmdFlags, Options, Settings
        from modules.devices.select import select_device
        from modules.models.catalog import CheckpointCatalog, HashCache
        from modules.models.manager import ModelManager
        from modules.processing.processor import Processor
        from modules.processing.samplers import build_default_registry

        self.settings = Settings(CmdFlags(data_dir=data), options if options is not None else Options())
        catalog = CheckpointCatalog(models, HashCache(data / "hashes.json"))
        catalog.refresh()
        flags = self.settings.flags
        self.device = select_device(use_cpu=True, device_id=None, precision=flags.precision, no_half=flags.no_half)
        self.manager = ModelManager(catalog, self.device)
        from types import SimpleNamespace

        processor = Processor(samplers=build_default_registry(), model_provider=lambda run: self.manager.current)
        self.generation = SimpleNamespace(processor=processor, status_texts=[])
        # wired as webui.wire_processing_core wires it (step 3)
        from modules.backends.setup import ExecutionSetup

        self.execution = ExecutionSetup(self.settings, self.device)
        self.manager.on_model_loaded(self.execution.on_model_loaded)
        processor.prompt_preprocessors.append(self.execution.infotext_preprocessor)
        self.generation.status_texts.append(lambda: self.execution.status_text(self.manager.current))


def _job_times(marks: list[float], started: float, finished: float) -> dict[str, Any]:
    """Per-step split of one job from its step-callback timestamps: head (text encoder + step 1, where the
    calibration runs), the later steps, and the tail (VAE decode and image conversion)."""
    steps = [later - earlier for earlier, later in zip(marks, marks[1:])]
    return {"total_s": round(finished - started, 2), "head_s": round(marks[0] - started, 2),
            "step_s": [round(value, 3) for value in steps], "tail_s": round(finished - marks[-1], 2)}


def _composed(times: dict[str, Any], steps: int) -> float:
    """The job's time at ``steps`` steps: head + (steps - 1) x median later step + tail."""
    return times["head_s"] + (steps - 1) * statistics.median(times["step_s"]) + times["tail_s"]


def bench_pipeline(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Easel's default settings on a fresh data dir (``backend: auto``: calibration, background export) against
    plain diffusers fp32 ``pipe()``, end to end, interleaved; then a second start on the same data dir."""
    import gc

    from modules.core.lazy_imports import hide_from_library_probes

    hide_from_library_probes()  # as the server's start does
    import numpy as np
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from modules.backends.base import ComponentWrapper
    from modules.processing.engine import StepControl
    from modules.processing.params import Txt2ImgParams
    from modules.processing.run import ProcessingRun

    work = Path(args.cache_dir or tempfile.mkdtemp(prefix="easel-bench-"))
    models = work / "models"
    folder = models / f"{args.pipeline}-random"
    if not (folder / "model_index.json").exists():
        started = time.perf_counter()
        build_random_pipeline(args.pipeline, folder, args.channels)
        log(f"built random {args.pipeline} in {time.perf_counter() - started:.0f} s: {folder}")
    data = work / f"data-{int(time.time())}"  # a fresh install: no calibration, no export
    threads = torch.get_num_threads()
    results: dict[str, Any] = {"pipeline": args.pipeline, "size": args.size, "steps_run": args.steps,
                               "composed_steps": args.compose_steps, "threads": threads, "cpu": cpu_description(),
                               "jobs": []}
    config, _ = unet_config(args.pipeline, args.channels)
    flops = unet_step_flops(config, 2, args.size)
    results["unet_tflop_per_step"] = round(flops / 1e12, 3)
    if args.peak_budget_s > 0:
        results["matmul_peak_gflops"] = {name: round(matmul_peak(name, budget_s=args.peak_budget_s), 1)
                                         for name in ("fp32", "bf16")}
    rss_start = rss_mib()
    services = _PipelineServices(models, data)
    setup = services.execution
    started = time.perf_counter()
    loaded = services.manager.ensure_loaded(folder.name)
    record = setup.applied[loaded.pipe]
    results["load_s"] = round(time.perf_counter() - started, 1)
    results["auto"] = {"choice": record.choice.reason if record.choice else None, "errors": record.errors}
    results["rss_after_load_mib"] = round(rss_mib())
    log(f"loaded in {results['load_s']} s, RSS {results['rss_after_load_mib']} MiB (from {rss_start:.0f}); "
        f"{results['auto']}")
    pipe = loaded.pipe

    def original(name: str, pipe: Any = pipe) -> Any:
        component = getattr(pipe, name)
        return component.original if isinstance(component, ComponentWrapper) else component

    plain = StableDiffusionPipeline(vae=original("vae"), text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                    unet=original("unet"), scheduler=EulerDiscreteScheduler.from_config(
                                        pipe.scheduler.config), safety_checker=None, feature_extractor=None,
                                    requires_safety_checker=False)
    prompt = "a red circle on a blue background"
    images: dict[str, Any] = {}

    def run_plain(plain: Any) -> dict[str, Any]:
        marks: list[float] = []

        def on_step_end(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            marks.append(time.perf_counter())
            return kwargs

        begun = time.perf_counter()
        image = plain(prompt, num_inference_steps=args.steps, width=args.size, height=args.size, guidance_scale=7.0,
                      generator=torch.Generator().manual_seed(1), callback_on_step_end=on_step_end).images[0]
        finished = time.perf_counter()
        images["plain"] = np.asarray(image.convert("RGB")).astype(np.int16)
        return {"path": "plain diffusers fp32", **_job_times(marks, begun, finished)}

    def run_easel(services: Any, label: str) -> dict[str, Any]:
        marks: list[float] = []
        texts: list[str] = []
        status = services.generation.status_texts

        def on_step(step: int, total: int, latents: Any) -> None:
            marks.append(time.perf_counter())
            texts.extend(text for text in (source() for source in status) if text)

        params = Txt2ImgParams(prompt=prompt, steps=args.steps, width=args.size, height=args.size, seed=1,
                               sampler_name="Euler", cfg_scale=7.0)
        begun = time.perf_counter()
        result = services.generation.processor.process(ProcessingRun(params, services.settings.options),
                                                       StepControl(on_step=on_step))
        finished = time.perf_counter()
        current = services.manager.current.pipe
        used = {name: dict(getattr(current, name).used) for name in ("unet", "vae")
                if hasattr(getattr(current, name), "used")}
        job = {"path": label, **_job_times(marks, begun, finished), "routes_used": used,
               "progress_texts": sorted(set(texts)), "infotext": result.infotexts[0].splitlines()[-1]}
        images[label] = np.asarray(result.images[0].convert("RGB")).astype(np.int16)
        return job

    def pixels_vs_plain(label: str) -> dict[str, Any] | None:
        """The same seed, sampler and steps as the plain job: how far the picture moved."""
        if "plain" not in images or label not in images:
            return None
        diff = np.abs(images[label] - images["plain"])
        mse = float((diff.astype(np.float64) ** 2).mean())
        return {"mean_abs": round(float(diff.mean()), 2), "max_abs": int(diff.max()),
                "psnr_db": round(float(10 * np.log10(255 ** 2 / mse)), 1) if mse else None}

    def note(job: dict[str, Any]) -> None:
        job["composed_s"] = round(_composed(job, args.compose_steps), 1)
        job["rss_mib"] = round(rss_mib())
        results["jobs"].append(job)
        log(f"{job['path']}: {job['total_s']} s for {args.steps} steps (composed {args.compose_steps} steps: "
            f"{job['composed_s']} s) {job.get('routes_used', '')} {job.get('progress_texts', '')}")

    export = record.adaptive.export if record.adaptive is not None else None
    with torch.no_grad():
        note(run_easel(services, "easel first job (fresh install)"))
        for rep in range(args.reps):
            note(run_plain(plain))
            if export is not None and export.state == "running" and rep == args.reps - 1:
                log("waiting for the background export")
                export.wait()
            note(run_easel(services, "easel"))
    for job in results["jobs"]:
        if not job["path"].startswith("plain"):
            job["vs_plain"] = pixels_vs_plain(job["path"])
    if export is not None:
        results["export"] = {"route": export.route_name, "state": export.state, "error": export.error,
                             "seconds": round(export.finished - export.started, 1)}
    results["calibration"] = setup.calibration.data
    results["unet_routes"] = {}
    for key, routes in setup.calibration.data["times"].items():
        if "|unet|" not in key or not key.endswith(f"2x4x{args.size // 8}x{args.size // 8}x77"):
            continue
        for name, values in routes.items():
            best = min(values)
            row = {"fastest_s": best, "gflops": round(flops / best / 1e9, 1)}
            if "matmul_peak_gflops" in results:
                row["pct_of_bf16_peak"] = round(100 * flops / best / 1e9 / results["matmul_peak_gflops"]["bf16"], 1)
                row["pct_of_fp32_peak"] = round(100 * flops / best / 1e9 / results["matmul_peak_gflops"]["fp32"], 1)
            results["unet_routes"][name] = row
    results["peak_rss_first_start_mib"] = round(peak_rss_mib())
    plain_jobs = [job for job in results["jobs"] if job["path"].startswith("plain")]
    easel_jobs = [job for job in results["jobs"] if job["path"] == "easel"]
    plain_composed = statistics.median(job["composed_s"] for job in plain_jobs)
    results["summary"] = {
        "plain_fp32_job_s": round(plain_composed, 1),
        "easel_job_s": round(statistics.median(job["composed_s"] for job in easel_jobs), 1),
        "first_job_s": results["jobs"][0]["composed_s"],
    }
    summary = results["summary"]
    summary["speedup"] = round(plain_composed / summary["easel_job_s"], 2)
    summary["first_job_over_plain"] = round(summary["first_job_s"] / plain_composed, 2)
    log(f"summary: {summary}; UNet routes: {results['unet_routes']}")
    # a second start on the same data dir: the export is read back, the measurements decide at once
    exported = {str(path): path.stat().st_mtime_ns for path in (data / "cache").rglob("*")
                if path.suffix in (".xml", ".bin", ".onnx")}
    record.remove(pipe)
    del plain, pipe, loaded, record, export
    services.manager.unload()
    del services, setup
    gc.collect()
    if args.second_start:
        services2 = _PipelineServices(models, data)
        setup2 = services2.execution
        started = time.perf_counter()
        loaded2 = services2.manager.ensure_loaded(folder.name)
        record2 = setup2.applied[loaded2.pipe]
        export2 = record2.adaptive.export if record2.adaptive is not None else None
        ready = export2.wait() if export2 is not None else False
        second: dict[str, Any] = {"load_s": round(time.perf_counter() - started, 1), "export_ready": ready,
                                  "export_rewritten": {str(path): path.stat().st_mtime_ns for path in
                                                       (data / "cache").rglob("*") if str(path) in exported}
                                  != exported}
        with torch.no_grad():
            job = run_easel(services2, "easel after restart")
        job["composed_s"] = round(_composed(job, args.compose_steps), 1)
        job["vs_plain"] = pixels_vs_plain(job["path"])
        second["job"] = job
        second["speedup"] = round(plain_composed / job["composed_s"], 2)
        summary["after_restart_job_s"] = job["composed_s"]
        summary["after_restart_speedup"] = second["speedup"]
        results["second_start"] = second
        log(f"second start: {second}")
        record2.remove(loaded2.pipe)
    results["peak_rss_mib"] = round(peak_rss_mib())
    return results


def pipeline_table(results: dict[str, Any]) -> str:
    """The ``--pipeline`` result as Markdown."""
    cpu = results["cpu"]
    lines = [f"{results['pipeline']} architecture (random weights), {results['size']}², {results['threads']} "
             f"thread(s); CPU {cpu['model']} ({', '.join(cpu['flags'])}; native bf16: {cpu['native_bf16']}); "
             f"jobs of {results['steps_run']} steps, composed to {results['composed_steps']} "
             f"(head + {results['composed_steps'] - 1} x median later step + tail); peak RSS "
             f"{results.get('peak_rss_mib')} MiB", "",
             "| job (in run order) | s measured | s composed | routes (calls) | pixels vs plain: mean / max abs / "
             "PSNR dB | progress text |",
             "|---|---|---|---|---|---|"]
    jobs = list(results["jobs"])
    if "second_start" in results:
        jobs.append(results["second_start"]["job"])
    for job in jobs:
        routes = "; ".join(f"{name}: {counts}" for name, counts in job.get("routes_used", {}).items())
        texts = " / ".join(job.get("progress_texts", []))
        moved = job.get("vs_plain")
        pixels = f"{moved['mean_abs']} / {moved['max_abs']} / {moved['psnr_db']}" if moved else ""
        lines.append(f"| {job['path']} | {job['total_s']} | {job['composed_s']} | {routes} | {pixels} | {texts} |")
    lines += ["", "| UNet route | fastest s/step | GFLOP/s | % bf16 peak | % fp32 peak |", "|---|---|---|---|---|"]
    for name, row in results.get("unet_routes", {}).items():
        lines.append(f"| {name} | {row['fastest_s']} | {row['gflops']} | {row.get('pct_of_bf16_peak', '')} | "
                     f"{row.get('pct_of_fp32_peak', '')} |")
    lines += ["", "summary: " + json.dumps(results["summary"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--unet", action="store_true", help="per-backend UNet step benchmark")
    parser.add_argument("--pipeline", default=None, metavar="FAMILY",
                        help="end to end on a random-weight FAMILY pipeline (sd15): Easel defaults vs plain fp32")
    parser.add_argument("--compose-steps", type=int, default=20, help="--pipeline: job length the times compose to")
    parser.add_argument("--second-start", action=argparse.BooleanOptionalAction, default=True,
                        help="--pipeline: also time a second start on the same data dir")
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

    if args.pipeline:
        result = bench_pipeline(args, log)
    elif args.workers:
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
        if args.unet or args.pipeline:
            table = pipeline_table(result) if args.pipeline else markdown_table(result)
            out.with_suffix(".md").write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
