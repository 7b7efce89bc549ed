"""Generate pictures of the embedded model through Easel's own processing core, and score them.

Shared by ``cli/eval_adherence.py`` (the 200-prompt measurement in the model card) and the tests that check
that prompts, guidance, negative prompts, samplers and img2img strength really act on the picture. Both go
through :class:`~modules.processing.processor.Processor`, the object behind the API's txt2img/img2img, so what
is measured is what a user gets; each batch carries one prompt and one seed per image.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from modules.core.paths import REPO_ROOT
from tools.embedded.scoring import adherence, score_images
from tools.embedded.shapes import ShapeSpec, prompt_for, random_spec

DEFAULT_MODEL = REPO_ROOT / "models" / "Stable-diffusion" / "easel-shapes-v1"
SAMPLERS: tuple[str, ...] = ("Euler", "Euler a", "DPM++ 2M", "DDIM", "UniPC")
PROMPT_SEED = 20261121
FIRST_IMAGE_SEED = 1000


def has_weights(folder: Path = DEFAULT_MODEL) -> bool:
    return (folder / "model_index.json").is_file() and any((folder / "unet").glob("*.safetensors"))


def prompt_set(count: int, seed: int = PROMPT_SEED) -> list[ShapeSpec]:
    """Fixed evaluation specs (prompts via ``prompt_for``); image ``i`` uses seed ``FIRST_IMAGE_SEED + i``."""
    rng = random.Random(seed)
    return [random_spec(rng) for _ in range(count)]


@dataclass
class EmbeddedRunner:
    """The embedded model loaded by Easel's model manager, generating through Easel's Processor on the CPU."""

    model_dir: Path = DEFAULT_MODEL
    batch_size: int = 25

    def __post_init__(self) -> None:
        from modules.devices.select import select_device
        from modules.models.catalog import CheckpointCatalog, HashCache
        from modules.models.manager import ModelManager
        from modules.processing.processor import Processor
        from modules.processing.samplers import build_default_registry

        self._hashes = tempfile.TemporaryDirectory(prefix="easel-eval-")
        catalog = CheckpointCatalog(self.model_dir.parent, HashCache(Path(self._hashes.name) / "hashes.json"))
        catalog.refresh()
        device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
        self.model = ModelManager(catalog, device).ensure_loaded(self.model_dir.name)
        self.processor = Processor(samplers=build_default_registry(), model_provider=lambda run: self.model)

    def txt2img(self, prompts: Sequence[str], seeds: Sequence[int], *, sampler: str = "Euler", steps: int = 20,
                cfg: float = 7.0, negative_prompts: Sequence[str] | None = None, size: int = 64) -> list[Image.Image]:
        from modules.processing.params import Txt2ImgParams

        def params(count: int) -> Any:
            return Txt2ImgParams(prompt="", steps=steps, cfg_scale=cfg, width=size, height=size,
                                 sampler_name=sampler, batch_size=count)

        return self._generate(params, prompts, seeds, negative_prompts, None)

    def img2img(self, init_images: Sequence[Image.Image], prompts: Sequence[str], seeds: Sequence[int], *,
                strength: float, sampler: str = "Euler", steps: int = 20, cfg: float = 7.0) -> list[Image.Image]:
        """One init image per prompt; ``strength`` is A1111's ``denoising_strength``."""
        from modules.processing.params import Img2ImgParams

        def params(count: int) -> Any:
            return Img2ImgParams(prompt="", steps=steps, cfg_scale=cfg, width=init_images[0].width,
                                 height=init_images[0].height, sampler_name=sampler, batch_size=count,
                                 denoising_strength=strength)

        return self._generate(params, prompts, seeds, None, list(init_images))

    def _generate(self, make_params: Any, prompts: Sequence[str], seeds: Sequence[int],
                  negative_prompts: Sequence[str] | None, init_images: list[Image.Image] | None) -> list[Image.Image]:
        from modules.core.settings import Options
        from modules.processing.run import ProcessingRun

        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        negatives = list(negative_prompts) if negative_prompts is not None else [""] * len(prompts)
        images: list[Image.Image] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            count = len(prompts[chunk])
            run = ProcessingRun(make_params(count), Options())
            # Per-image prompts and seeds, as A1111 scripts set them on `p` (prompt matrix, prompts from file).
            run.all_prompts = list(prompts[chunk])
            run.all_negative_prompts = negatives[chunk]
            run.all_seeds = [int(seed) for seed in seeds[chunk]]
            run.all_subseeds = [-1] * count
            if init_images is not None:
                run.init_images = init_images[chunk]
            images.extend(self.processor.process(run).images[:count])
        return images


def evaluate(runner: EmbeddedRunner, specs: Sequence[ShapeSpec], *, sampler: str = "Euler", steps: int = 20,
             cfg: float = 7.0, first_seed: int = FIRST_IMAGE_SEED) -> tuple[dict[str, float], list[Image.Image]]:
    """Adherence percentages (colour, background, shape) of one image per spec, and the images."""
    prompts = [prompt_for(spec) for spec in specs]
    seeds = [first_seed + index for index in range(len(specs))]
    images = runner.txt2img(prompts, seeds, sampler=sampler, steps=steps, cfg=cfg)
    return adherence(score_images(images, specs)), images
