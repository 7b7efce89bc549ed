"""Measure how well a model follows shape prompts: generate at fixed seeds, score from pixels, print percentages.

    venv/bin/python cli/eval_adherence.py --model models/Stable-diffusion/easel-shapes-v1 --sampler Euler --n 200
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_MODEL = REPO_ROOT / "models" / "Stable-diffusion" / "easel-shapes-v1"

# ---------------------------------------------------------------- generation (kept isolated: to be swapped for
# Easel's own processing pipeline; everything below only needs `generate` to return one PIL image per prompt)

SAMPLERS: dict[str, str] = {
    "Euler": "EulerDiscreteScheduler",
    "Euler a": "EulerAncestralDiscreteScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
    "DDIM": "DDIMScheduler",
    "UniPC": "UniPCMultistepScheduler",
}


@functools.cache
def _load_pipeline(path: str) -> Any:
    """Loaded once per path so that several samplers share one pipeline."""
    import diffusers

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(
    prompts: list[str],
    seeds: list[int],
    model: str | Path = DEFAULT_MODEL,
    sampler: str = "Euler",
    steps: int = 20,
    cfg: float = 7.0,
    negative_prompts: list[str] | None = None,
    size: int = 64,
    batch_size: int = 25,
) -> list[Image.Image]:
    """One image per (prompt, seed); each image's noise comes from its own `torch.Generator().manual_seed(seed)`."""
    import diffusers

    pipe = _load_pipeline(str(model))
    # from_config keeps the model's prediction type, zero-SNR rescaling and trailing spacing.
    pipe.scheduler = getattr(diffusers, SAMPLERS[sampler]).from_config(pipe.scheduler.config)
    images: list[Image.Image] = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        generators = [torch.Generator().manual_seed(seed) for seed in seeds[chunk]]
        with torch.inference_mode():
            result = pipe(
                prompt=prompts[chunk],
                negative_prompt=negative_prompts[chunk] if negative_prompts else None,
                num_inference_steps=steps,
                guidance_scale=cfg,
                height=size,
                width=size,
                generator=generators,
            )
        images.extend(result.images)
    return images


# ---------------------------------------------------------------- evaluation

from modules.models.embedded.scoring import adherence, score_images  # noqa: E402
from modules.models.embedded.shapes import ShapeSpec, prompt_for, random_spec  # noqa: E402

PROMPT_SEED = 20261121
FIRST_IMAGE_SEED = 1000


def prompt_set(count: int, seed: int = PROMPT_SEED) -> list[ShapeSpec]:
    """The fixed evaluation specs; prompts come from `prompt_for`, image seeds are FIRST_IMAGE_SEED + index."""
    rng = random.Random(seed)
    return [random_spec(rng) for _ in range(count)]


def evaluate(model: str | Path, sampler: str, steps: int, cfg: float, count: int,
             grid: Path | None = None) -> dict[str, float]:
    specs = prompt_set(count)
    prompts = [prompt_for(spec) for spec in specs]
    seeds = [FIRST_IMAGE_SEED + index for index in range(count)]
    began = time.perf_counter()
    images = generate(prompts, seeds, model=model, sampler=sampler, steps=steps, cfg=cfg)
    elapsed = time.perf_counter() - began
    result = adherence(score_images(images, specs))
    result["seconds_per_image"] = elapsed / max(1, count)
    if grid is not None:
        save_grid(images[:64], grid)
    return result


def save_grid(images: list[Image.Image], path: Path, columns: int = 8) -> None:
    if not images:
        return
    width, height = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * width, rows * height), (128, 128, 128))
    for index, image in enumerate(images):
        sheet.paste(image, ((index % columns) * width, (index // columns) * height))
    sheet.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--sampler", default="Euler", help=f"one of {', '.join(SAMPLERS)}, or 'all'")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--grid", type=Path, default=None, help="save the first 64 images as a PNG grid")
    parser.add_argument("--json", action="store_true", help="print one JSON line per sampler")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    samplers = list(SAMPLERS) if args.sampler == "all" else [args.sampler]
    for name in samplers:
        if name not in SAMPLERS:
            parser.error(f"--sampler must be one of {', '.join(SAMPLERS)} or 'all', got {name!r}")
    for name in samplers:
        grid = args.grid.with_name(f"{args.grid.stem}-{name.replace(' ', '_')}{args.grid.suffix}") \
            if args.grid and len(samplers) > 1 else args.grid
        result = evaluate(args.model, name, args.steps, args.cfg, args.n, grid)
        if args.json:
            print(json.dumps({"sampler": name, "steps": args.steps, "cfg": args.cfg, "n": args.n, **result}))
        else:
            print(f"{name:9s} steps={args.steps} cfg={args.cfg} n={args.n}: colour {result['colour']:.1f}%  "
                  f"background {result['background']:.1f}%  shape {result['shape']:.1f}%  "
                  f"({result['seconds_per_image']:.2f} s/image)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
