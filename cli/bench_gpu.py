"""GPU benchmark, measured rather than asserted: Easel's txt2img job ÷ plain diffusers on the same CUDA device.

For each family (``sd15`` at 512², ``sdxl`` at 1024² by default) a random-weight pipeline is built from
``configs/<family>`` (no download: the cost is the architecture) and saved as a diffusers folder. Then, in one
process on one GPU:

* **plain**: ``AutoPipeline.from_pretrained(folder, torch_dtype=float16).to("cuda")`` and ``pipe(...)``: what a
  diffusers user writes;
* **easel**: the services ``webui.py`` builds (default flags and options: the device, precision, memory policy and
  execution backend Easel picks on its own), the model loaded by warm-up, one ``txt2img`` job through the durable
  queue per repetition, images saved as a user's would be.

Runs are interleaved (easel, plain, easel, plain…) after one warm-up each. Reported per family: the median seconds
per image of each (Easel's from the job's ``started_at``→``finished_at`` and from submit→finished), the median
ratio, iterations per second, the peak CUDA memory each run allocated (``torch.cuda.max_memory_allocated``, reset
before each run) and the largest pixel difference between the two images of the same seed (informative only:
Easel's sampler and noise follow A1111, plain diffusers' its own defaults).

Example: ``python cli/bench_gpu.py --families sd15 sdxl --steps 20 --reps 3 --out .bench/gpu.json``
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

DEVICE, DTYPE = "cuda", "float16"  # where and how plain diffusers runs
DEFAULT_SIZES = {"sd15": 512, "sd2": 768, "sdxl": 1024}


def build_random_family(family: str, folder: Path) -> Path:
    """A diffusers folder of ``configs/<family>`` with random weights (SD 1.x/2.x: one CLIP text encoder; SDXL:
    two, the second with a projection)."""
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    configs = ROOT / "configs" / family
    torch.manual_seed(0)

    def config(part: str, name: str = "config.json") -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads((configs / part / name).read_text())
        return loaded

    with torch.no_grad():
        unet = diffusers.UNet2DConditionModel.from_config(config("unet"))
        vae = diffusers.AutoencoderKL.from_config(config("vae"))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_json_file(str(configs / "text_encoder" / "config.json")))
    scheduler = diffusers.EulerDiscreteScheduler.from_config(config("scheduler", "scheduler_config.json"))
    tokenizer = CLIPTokenizer.from_pretrained(str(ROOT / "configs" / "tokenizers" / "clip"))
    pipe: Any
    if (configs / "text_encoder_2").is_dir():
        with torch.no_grad():
            text_encoder_2 = CLIPTextModelWithProjection(
                CLIPTextConfig.from_json_file(str(configs / "text_encoder_2" / "config.json")))
        pipe = diffusers.StableDiffusionXLPipeline(
            vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=tokenizer, unet=unet, scheduler=scheduler)
    else:
        pipe = diffusers.StableDiffusionPipeline(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


VARIANTS = {"default": {}, "compile": {"torch_compile": "default"}, "nf4": {"quantization": "bnb-nf4"},
            "int8": {"quantization": "bnb-int8"}}


def bench_family(family: str, size: int, args: argparse.Namespace, work: Path, log: Any) -> dict[str, Any]:
    import diffusers
    import torch

    from modules.processing.params import Txt2ImgParams

    name = f"random-{family}"
    models = work / "models"
    started = time.perf_counter()
    build_random_family(family, models / "Stable-diffusion" / name)
    log(f"{family}: built and saved in {time.perf_counter() - started:.1f}s")

    resident = torch.cuda.memory_allocated()
    started = time.perf_counter()
    plain = diffusers.AutoPipelineForText2Image.from_pretrained(str(models / "Stable-diffusion" / name),
                                                                torch_dtype=getattr(torch, DTYPE)).to(DEVICE)
    plain.set_progress_bar_config(disable=True)
    plain_load = time.perf_counter() - started
    plain_model_gib = (torch.cuda.memory_allocated() - resident) / 2**30

    prompt = "a red circle on a white background"
    payload = Txt2ImgParams(prompt=prompt, steps=args.steps, width=size, height=size, seed=1234,
                            sampler_name="Euler", cfg_scale=7.0, save_images=True).model_dump(mode="json")
    variants = args.variants if family == args.families[0] else ["default"]
    measured: list[dict[str, Any]] = []
    try:
        for variant in variants:
            try:
                measured.append(bench_variant(variant, family, name, size, payload, plain, args, work, log))
            except Exception as exc:  # one configuration failing (a package missing) leaves the others measured
                log(f"{family}/{variant}: failed: {exc!r}")
                measured.append({"variant": variant, "error": repr(exc)})
            log(f"{family}/{variant}: {json.dumps(measured[-1])}")
    finally:
        plain.to("cpu")  # the next family gets the GPU to itself
    return {"family": family, "size": size, "steps": args.steps, "reps": args.reps,
            "plain_load_s": round(plain_load, 2), "plain_model_gib": round(plain_model_gib, 2), "variants": measured}


def bench_variant(variant: str, family: str, name: str, size: int, payload: dict[str, Any], plain: Any,
                  args: argparse.Namespace, work: Path, log: Any) -> dict[str, Any]:
    """One Easel configuration (``VARIANTS``) of ``family`` against the plain pipeline, interleaved."""
    import numpy as np
    import torch
    from PIL import Image

    from modules.core.settings import CmdFlags, Options, Settings
    from modules.jobs import JobStatus
    from modules.processing.image_metadata import read_infotext
    from webui import build_services, warm_up

    models = work / "models"
    prompt = str(payload["prompt"])
    settings = Settings(CmdFlags(data_dir=work / f"data-{family}-{variant}", models_dir=models),
                        Options(sd_model_checkpoint=name, **VARIANTS[variant]))
    resident = torch.cuda.memory_allocated()
    started = time.perf_counter()
    services = build_services(settings)
    warm_up(services)
    easel_load = time.perf_counter() - started
    model_gib = (torch.cuda.memory_allocated() - resident) / 2**30  # the weights Easel keeps on the GPU
    if services.startup_error:
        raise RuntimeError(services.startup_error)
    services.queue.start()
    log(f"{family}/{variant}: easel started and loaded in {easel_load:.1f}s on {services.device}")

    def run_plain() -> tuple[float, float, Any]:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        begun = time.perf_counter()
        image = plain(prompt, num_inference_steps=args.steps, width=size, height=size, guidance_scale=7.0,
                      generator=torch.Generator("cpu").manual_seed(1234)).images[0]
        torch.cuda.synchronize()
        return time.perf_counter() - begun, torch.cuda.max_memory_allocated() / 2**30, image

    infotexts: list[str] = []

    saving: list[float] = []

    def run_easel() -> tuple[float, float, float, Any]:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        begun = time.perf_counter()
        job = services.queue.wait(services.queue.submit("txt2img", payload).id, timeout=600)
        wall = time.perf_counter() - begun
        if job.status is not JobStatus.SUCCEEDED:
            raise RuntimeError(f"easel job {job.status}: {job.error}")
        assert job.started_at is not None and job.finished_at is not None
        images = (job.result or {}).get("images")
        assert isinstance(images, list) and images
        timings = (job.result or {}).get("timings")
        saving.append(float(timings["saving_s"]) if isinstance(timings, dict) else 0.0)  # type: ignore[arg-type]
        path = settings.data_paths.job_results / job.id / str(images[0])
        infotexts.append(read_infotext(path.read_bytes())[0] or "")
        return (job.finished_at - job.started_at, wall, torch.cuda.max_memory_allocated() / 2**30,
                Image.open(path).convert("RGB"))

    started = time.perf_counter()
    run_easel()  # warm-up: kernels chosen, caches filled (torch.compile compiles here)
    first_job = time.perf_counter() - started
    run_plain()
    rows: dict[str, list[float]] = {"easel_run_s": [], "easel_wall_s": [], "easel_saving_s": [], "plain_s": [],
                                    "easel_gib": [], "plain_gib": []}
    easel_image = plain_image = None
    for _ in range(args.reps):
        run_s, wall_s, gib, easel_image = run_easel()
        rows["easel_run_s"].append(run_s)
        rows["easel_wall_s"].append(wall_s)
        rows["easel_saving_s"].append(saving[-1])
        rows["easel_gib"].append(gib)
        plain_s, gib, plain_image = run_plain()
        rows["plain_s"].append(plain_s)
        rows["plain_gib"].append(gib)
        log(f"{family}/{variant}: easel {run_s:.3f}s (wall {wall_s:.3f}s), plain {plain_s:.3f}s")
    services.queue.stop()
    services.job_store.close()
    diff = int(np.abs(np.asarray(easel_image, dtype=np.int16) - np.asarray(plain_image, dtype=np.int16)).max())
    median = {key: statistics.median(values) for key, values in rows.items()}
    if services.manager is not None:
        services.manager.unload()
    torch.cuda.empty_cache()
    return {
        "variant": variant, "options": VARIANTS[variant], "easel_start_and_load_s": round(easel_load, 2),
        "easel_first_job_s": round(first_job, 2),
        "plain_s": round(median["plain_s"], 3), "easel_run_s": round(median["easel_run_s"], 3),
        "easel_wall_s": round(median["easel_wall_s"], 3),
        "easel_over_plain": round(median["easel_run_s"] / median["plain_s"], 3),
        # the job less its image writing (PNG encode + fsync of the sample and the result): plain diffusers writes
        # nothing, so this is the like-for-like generation ratio
        "easel_saving_s": round(median["easel_saving_s"], 3),
        "easel_generation_over_plain": round(statistics.median(
            (run - save) / plain for run, save, plain in zip(rows["easel_run_s"], rows["easel_saving_s"],
                                                             rows["plain_s"])), 3),
        "easel_model_gib": round(model_gib, 2),
        "easel_wall_over_plain": round(median["easel_wall_s"] / median["plain_s"], 3),
        "plain_it_s": round(args.steps / median["plain_s"], 2),
        "easel_it_s": round(args.steps / median["easel_run_s"], 2),
        "plain_peak_gib": round(max(rows["plain_gib"]), 2), "easel_peak_gib": round(max(rows["easel_gib"]), 2),
        "largest_pixel_difference": diff, "easel_infotext": infotexts[-1],
        "raw": {key: [round(v, 4) for v in values] for key, values in rows.items()},
    }


def _pretend_cuda_is_the_cpu() -> None:
    """--smoke-cpu: the CUDA calls this script makes become CPU no-ops, so its flow can be checked without a GPU."""
    import torch

    torch.cuda.synchronize = lambda *a, **k: None  # type: ignore[assignment]
    torch.cuda.reset_peak_memory_stats = lambda *a, **k: None  # type: ignore[assignment]
    torch.cuda.max_memory_allocated = lambda *a, **k: 0  # type: ignore[assignment]
    torch.cuda.empty_cache = lambda: None  # type: ignore[assignment]
    torch.cuda.get_device_name = lambda *a: "cpu (smoke run)"  # type: ignore[assignment]
    global DEVICE, DTYPE
    DEVICE, DTYPE = "cpu", "float32"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["sd15", "sdxl"])
    parser.add_argument("--size", type=int, default=None, help="image side (default: the family's native size)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS),
                        help="Easel configurations measured on the first family (later families: default only)")
    parser.add_argument("--out", default=None, help="also write the JSON result here")
    parser.add_argument("--smoke-cpu", action="store_true", help="check the script on a CPU (timings meaningless)")
    args = parser.parse_args(argv)

    import torch

    if args.smoke_cpu:
        _pretend_cuda_is_the_cpu()
    elif not torch.cuda.is_available():
        print("bench_gpu: PyTorch sees no CUDA device; nothing to measure", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result: dict[str, Any] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "families": []}
    with tempfile.TemporaryDirectory(prefix="easel-bench-gpu-") as folder:
        for family in args.families:
            size = args.size or DEFAULT_SIZES.get(family, 512)
            result["families"].append(bench_family(family, size, args, Path(folder), log))
            torch.cuda.empty_cache()
            if args.out:  # written after each family, so a run cut short keeps what it measured
                Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
