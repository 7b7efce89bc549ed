"""Generate images from the command line with Easel's processing core (no server needed).

    python cli/generate.py "a yellow triangle on a purple background" --steps 20 --seed 1 -o out.png

Uses the same settings, model catalog, sampler registry, processor and infotext as the server, so the PNG it
writes carries the same ``parameters`` text and parses back to the request.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Easel command-line generator")
    parser.add_argument("prompt", help="the prompt (A1111 syntax)")
    parser.add_argument("-n", "--negative", default="", help="negative prompt")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--sampler", default="Default", help="sampler name, e.g. 'Euler a', 'DPM++ 2M Karras'")
    parser.add_argument("--cfg", type=float, default=7.0, help="CFG scale")
    parser.add_argument("--seed", type=int, default=-1)
    parser.add_argument("--width", type=int, default=None, help="default: the model's native size")
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--batch-count", type=int, default=1)
    parser.add_argument("--model", default=None, help="checkpoint title/name/hash (default: the first found)")
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("-o", "--output", default="easel.png",
                        help="output file; with several images, -1, -2 ... are added before the suffix")
    parser.add_argument("--use-cpu", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from modules.core.errors import EaselError
    from modules.core.settings import Settings
    from modules.devices import select_device
    from modules.models.catalog import CheckpointCatalog, HashCache
    from modules.models.manager import ModelManager
    from modules.processing.engine import StepControl
    from modules.processing.image_metadata import embed_infotext
    from modules.processing.params import Txt2ImgParams
    from modules.processing.processor import Processor
    from modules.processing.run import ProcessingRun
    from modules.processing.samplers import build_default_registry

    flags = []
    if args.models_dir:
        flags += ["--models-dir", args.models_dir]
    if args.data_dir:
        flags += ["--data-dir", args.data_dir]
    settings = Settings.load(flags)
    settings.data_paths.ensure()
    catalog = CheckpointCatalog(settings.model_paths.stable_diffusion, HashCache(settings.data_paths.hash_cache))
    catalog.refresh()
    device = select_device(use_cpu=args.use_cpu, device_id=None, precision=settings.flags.precision,
                           no_half=settings.flags.no_half)
    manager = ModelManager(catalog, device, allow_pickle=settings.flags.allow_pickle)
    try:
        model = manager.ensure_loaded(args.model)
        width = args.width or model.default_size[0]
        height = args.height or model.default_size[1]
        params = Txt2ImgParams(prompt=args.prompt, negative_prompt=args.negative, steps=args.steps,
                               sampler_name=args.sampler, cfg_scale=args.cfg, seed=args.seed, width=width,
                               height=height, batch_size=args.batch_size, n_iter=args.batch_count)
    except EaselError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model)
    run = ProcessingRun(params, settings.options)
    total = params.total_images * params.steps
    with tqdm(total=total, unit="step", desc=model.info.model_name) as bar:
        done = {"steps": 0}

        def on_step(step: int, steps: int, latents: object) -> None:
            bar.update(1)
            done["steps"] += 1

        try:
            result = processor.process(run, StepControl(on_step=on_step))
        except EaselError as exc:
            print(f"error: {exc.message}", file=sys.stderr)
            return 2
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fmt = output.suffix.lstrip(".").lower() or "png"
    from modules.core.atomic import atomic_write_bytes

    for index, image in enumerate(result.images):
        target = output if len(result.images) == 1 else output.with_name(f"{output.stem}-{index + 1}{output.suffix}")
        atomic_write_bytes(target, embed_infotext(image, result.infotexts[index], fmt))
        print(f"{target}  seed={result.all_seeds[index]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
