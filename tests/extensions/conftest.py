"""A real Easel (services, warm-up, tiny SD model) with scripts, extensions, a tiny LoRA and a tiny embedding."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

THIRD_PARTY_SCRIPT = '''
import gradio as gr
from PIL import ImageOps

import modules.scripts as scripts
from modules import script_callbacks, shared
from modules.processing import StableDiffusionProcessingTxt2Img, process_images

CFG_CALLS = []


def count_steps(params):
    CFG_CALLS.append((params.sampling_step, tuple(params.x.shape)))


script_callbacks.on_cfg_denoiser(count_steps)


class TagEverything(scripts.Script):
    def title(self):
        return "Tag Everything"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        enabled = gr.Checkbox(label="Enabled", value=False)
        tag = gr.Textbox(label="Tag", value="default-tag")
        return [enabled, tag]

    def process(self, p, enabled, tag):
        if enabled:
            p.extra_generation_params["Tagged"] = tag

    def postprocess_image(self, p, pp, enabled, tag):
        if enabled:
            pp.image = ImageOps.invert(pp.image.convert("RGB"))


class DoubleSteps(scripts.Script):
    def title(self):
        return "Double Steps"

    def ui(self, is_img2img):
        return [gr.Slider(label="Factor", minimum=1, maximum=4, step=1, value=2)]

    def run(self, p, factor):
        assert isinstance(p, StableDiffusionProcessingTxt2Img)
        p.steps = int(p.steps * factor)
        p.extra_generation_params["Doubled"] = shared.opts.samples_format
        return process_images(p)
'''

CRASHY_SCRIPT = '''
import modules.scripts as scripts
from modules import script_callbacks


def explode(params):
    raise RuntimeError("boom in cfg")


script_callbacks.on_cfg_denoiser(explode)


class Crashy(scripts.Script):
    def title(self):
        return "Crashy"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        raise ValueError("boom in process")
'''


def build_tiny_lora(tiny_sd_path: Path, target: Path) -> Path:
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_path / "unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                                init_lora_weights=False))
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    StableDiffusionPipeline.save_lora_weights(target.parent, unet_lora_layers=get_peft_model_state_dict(unet),
                                              weight_name=target.name, safe_serialization=True)
    return target


def build_tiny_embedding(target: Path) -> Path:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(3)
    save_file({"emb_params": torch.randn(2, 32, generator=generator) * 3}, str(target))
    return target


@pytest.fixture(scope="package")
def easel(tmp_path_factory: pytest.TempPathFactory, tiny_sd_path: Path) -> Iterator[Any]:
    from modules.core.paths import REPO_ROOT
    from modules.core.settings import CmdFlags, Options, Settings
    from webui import build_services, warm_up

    root = tmp_path_factory.mktemp("easel_ext")
    models = root / "models"
    shutil.copytree(tiny_sd_path, models / "Stable-diffusion" / "tiny-sd")
    (models / "Lora").mkdir(parents=True)
    (models / "embeddings").mkdir(parents=True)
    build_tiny_lora(tiny_sd_path, models / "Lora" / "tiny_lora.safetensors")
    build_tiny_embedding(models / "embeddings" / "tinyemb.safetensors")
    extensions = root / "extensions"
    (extensions / "thirdparty" / "scripts").mkdir(parents=True)
    (extensions / "thirdparty" / "scripts" / "tp.py").write_text(textwrap.dedent(THIRD_PARTY_SCRIPT))
    (extensions / "crashy" / "scripts").mkdir(parents=True)
    (extensions / "crashy" / "scripts" / "crash.py").write_text(textwrap.dedent(CRASHY_SCRIPT))
    (extensions / "crashy" / "install.py").write_text("raise SystemExit('must not run without consent')\n")
    (extensions / "broken" / "scripts").mkdir(parents=True)
    (extensions / "broken" / "scripts" / "bad.py").write_text("import does_not_exist_anywhere\n")
    (extensions / "offext" / "scripts").mkdir(parents=True)
    (extensions / "offext" / "scripts" / "off.py").write_text(
        "import modules.scripts as scripts\n\nclass Off(scripts.Script):\n    def title(self):\n"
        "        return 'Disabled One'\n")
    data = root / "data"
    data.mkdir()
    (data / "styles.csv").write_text('name,prompt,negative_prompt\nblueish,"{prompt}, blue",green\n')
    (data / "wildcards").mkdir()
    (data / "wildcards" / "color.txt").write_text("# colours\nred\ngreen\n")
    flags = CmdFlags(data_dir=data, models_dir=models, use_cpu=True, precision="full", no_half=True)
    settings = Settings(flags, Options(sd_model_checkpoint="tiny-sd", disabled_extensions=["offext"]))
    services = build_services(settings)
    services.script_dirs = [REPO_ROOT / "scripts"]
    services.extension_roots = [extensions]
    warm_up(services, load_model=False)
    assert services.startup_error is None, services.startup_error
    yield services
    services.job_store.close()


@pytest.fixture(scope="package")
def txt2img(easel: Any) -> Any:
    """``txt2img(**fields)``: a small generation through the real service (customizers, executors, hooks)."""
    from modules.processing.params import Txt2ImgParams

    def generate(**fields: Any) -> Any:
        defaults: dict[str, Any] = {"steps": 3, "width": 64, "height": 64, "seed": 11, "sampler_name": "Euler",
                                    "cfg_scale": 7.0}
        return easel.generation.generate(Txt2ImgParams(**{**defaults, **fields}))

    return generate
