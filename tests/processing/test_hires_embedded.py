"""With the embedded model (easel-shapes-v1): hires fix keeps the first pass's colours at the larger size.

The second pass re-noises the upscaled first pass only partly (denoising strength 0.45), so the colour layout of
each picture must survive: the hires result, scaled back down, is much closer to its own first pass than first
passes of other seeds are to each other. Skipped cleanly while the model folder has no weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modules.core.paths import REPO_ROOT
from modules.core.settings import Options

MODEL_DIR = REPO_ROOT / "models" / "Stable-diffusion" / "easel-shapes-v1"


def _has_weights(folder: Path) -> bool:
    return (folder / "model_index.json").is_file() and any((folder / "unet").glob("*.safetensors"))


pytestmark = pytest.mark.skipif(not _has_weights(MODEL_DIR), reason="embedded model easel-shapes-v1 not present")

PROMPTS = ["a red circle on a blue background", "a yellow square on a black background",
           "a white triangle on a green background"]


def _small(image: object) -> np.ndarray:
    from PIL import Image

    assert isinstance(image, Image.Image)
    return np.asarray(image.convert("RGB").resize((16, 16), Image.Resampling.BOX), dtype=np.float32)


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_fix_keeps_the_first_pass_colours(tmp_path: Path, upscaler: str) -> None:
    from modules.devices.select import select_device
    from modules.models.catalog import CheckpointCatalog, HashCache
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
    firsts, hires = [], []
    for index, prompt in enumerate(PROMPTS):
        common = {"prompt": prompt, "steps": 12, "cfg_scale": 7.0, "width": 64, "height": 64, "seed": 100 + index,
                  "sampler_name": "Euler"}
        first = processor.process(ProcessingRun(Txt2ImgParams(**common), Options())).images[0]
        upscaled = processor.process(ProcessingRun(Txt2ImgParams(
            **common, enable_hr=True, hr_scale=2.0, hr_upscaler=upscaler, denoising_strength=0.45,
            hr_second_pass_steps=8), Options())).images[0]
        assert upscaled.size == (128, 128)
        firsts.append(_small(first))
        hires.append(_small(upscaled))
    for index in range(len(PROMPTS)):
        kept = np.abs(hires[index] - firsts[index]).mean()
        others = [np.abs(firsts[other] - firsts[index]).mean() for other in range(len(PROMPTS)) if other != index]
        assert kept < 0.5 * min(others), f"{PROMPTS[index]!r}: hires drifted {kept:.1f} vs other seeds {others}"
