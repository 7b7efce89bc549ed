"""Measure how well a model follows shape prompts: generate at fixed seeds through Easel's own processing core
(the Processor behind the API), score from pixels, print percentages.

    venv/bin/python cli/eval_adherence.py --model models/Stable-diffusion/easel-shapes-v1 --sampler Euler --n 200
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tools.embedded.evaluation import (  # noqa: E402
    DEFAULT_MODEL,
    SAMPLERS,
    EmbeddedRunner,
    evaluate,
    prompt_set,
)


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
    runner = EmbeddedRunner(args.model.resolve())
    specs = prompt_set(args.n)
    for name in samplers:
        grid = args.grid.with_name(f"{args.grid.stem}-{name.replace(' ', '_')}{args.grid.suffix}") \
            if args.grid and len(samplers) > 1 else args.grid
        began = time.perf_counter()
        result, images = evaluate(runner, specs, sampler=name, steps=args.steps, cfg=args.cfg)
        result["seconds_per_image"] = (time.perf_counter() - began) / max(1, args.n)
        if grid is not None:
            save_grid(images[:64], grid)
        if args.json:
            print(json.dumps({"sampler": name, "steps": args.steps, "cfg": args.cfg, "n": args.n, **result}))
        else:
            print(f"{name:9s} steps={args.steps} cfg={args.cfg} n={args.n}: colour {result['colour']:.1f}%  "
                  f"background {result['background']:.1f}%  shape {result['shape']:.1f}%  "
                  f"({result['seconds_per_image']:.2f} s/image)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
