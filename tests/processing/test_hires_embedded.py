"""With the embedded model (easel-shapes-v1): hires fix keeps the prompt's colours at the larger size.

Skipped cleanly while the model folder has no weights (it is trained separately)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modules.core.paths import REPO_ROOT
from modules.core.settings import Options

MODEL_DIR = REPO_ROOT / "models" / "Stable-diffusion" / "easel-shapes-v1"


def _has_weights(folder: Path) -> bool:
    return (folder / "model_index.json").is_file() and any((folder / "unet").glob("*.safetensors"))


pytestmark = pytest.mark.skipif(not _has_weights(MODEL_DIR), reason="embedded model easel-shapes-v1 not trained yet")

CASES = [("circle", "red", "blue"), ("square", "yellow", "black"), ("triangle", "white", "green")]


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_fix_keeps_the_prompts_colours(tmp_path: Path, upscaler: str) -> None:
    from PIL import Image

    from modules.devices.select import select_device
    from modules.models.catalog import CheckpointCatalog, HashCache
    from modules.models.embedded.scoring import score_image
    from modules.models.embedded.shapes import ShapeSpec, prompt_for
    from modules.models.manager import ModelManager
    from modules.processing.params import Txt2ImgParams
    from modules.processing.processor import Processor
    from modules.processing.run import ProcessingRun
    from modules.processing.samplers import build_default_registry

    catalog = CheckpointCatalog(MODEL_DIR.parent, HashCache(tmp_path / "hashes.json"))
    catalog.refresh()
    manager = ModelManager(catalog, select_device(use_cpu=True, device_id=None, precision="full", no_half=True))
    model = manager.ensure_loaded(MODEL_DIR.name)
    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model)
    matches = 0
    for index, (shape, colour, background) in enumerate(CASES):
        spec = ShapeSpec(shape, colour, background)
        params = Txt2ImgParams(prompt=prompt_for(spec), steps=12, cfg_scale=7.0, width=64, height=64,
                               seed=100 + index, sampler_name="Euler", enable_hr=True, hr_scale=2.0,
                               hr_upscaler=upscaler, denoising_strength=0.45, hr_second_pass_steps=8)
        image = processor.process(ProcessingRun(params, Options())).images[0]
        assert image.size == (128, 128)
        score = score_image(image.resize((64, 64), Image.Resampling.LANCZOS), spec)
        matches += int(score.colour_ok and score.background_ok)
    assert matches >= len(CASES) - 1, f"hires fix lost the prompt's colours ({matches}/{len(CASES)} kept)"
