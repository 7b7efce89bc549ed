"""The start path keeps bitsandbytes and torchao out (diffusers, transformers and peft only probe for them), and
Easel's own quantization still imports and uses them afterwards."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
sys.path.insert(0, {repo!r})
from modules.core.lazy_imports import hide_from_library_probes
hidden = hide_from_library_probes()
from diffusers import StableDiffusionPipeline, UNet2DConditionModel  # what the model manager loads
import diffusers.models.modeling_utils, transformers.modeling_utils, peft  # noqa: F401  (their probes ran)
loaded_at_start = sorted(name for name in {hidden!r} if sys.modules.get(name) is not None)
import torch
from modules.quantization.methods import get_method
layer = torch.nn.Sequential(torch.nn.Linear(64, 64))
quantized = get_method("bnb-nf4").quantize(layer)
print(json.dumps({{"hidden": hidden, "loaded_at_start": loaded_at_start,
                   "bnb_loaded_after": sys.modules.get("bitsandbytes") is not None,
                   "layer": type(quantized[0]).__name__}}))
"""


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None or importlib.util.find_spec("torchao") is None,
                    reason="needs bitsandbytes and torchao installed (requirements-dev.txt)")
def test_quantizers_stay_out_of_the_start_path_but_work_when_used() -> None:
    names = ("bitsandbytes", "torchao")
    code = PROBE.format(repo=str(REPO), hidden=names)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["hidden"] == list(names)
    assert result["loaded_at_start"] == [], "diffusers/transformers/peft imported a hidden quantizer"
    assert result["bnb_loaded_after"] and result["layer"] == "Linear4bit"


START_WITH_OPTION = """
import json, sys
sys.path.insert(0, {repo!r})
from modules.core.lazy_imports import HIDDEN_FROM_PROBES, hide_from_library_probes
from modules.quantization.methods import get_method, probe_packages
hidden = hide_from_library_probes(tuple(name for name in HIDDEN_FROM_PROBES if name not in probe_packages({option!r})))
import torch
from diffusers import UNet2DConditionModel
from modules.quantization.apply import load_quantized
method = get_method("torchao-int8")
method.require_available()
refusal = method.diffusers_refusal(torch.device("cpu"))
by_hand = method.quantize(torch.nn.Sequential(torch.nn.Linear(64, 64)))
through_diffusers = None
if refusal is None:
    torch.manual_seed(0)
    UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, cross_attention_dim=32,
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8,
                         attention_head_dim=4).save_pretrained({folder!r} + "/unet")
    unet, route = load_quantized(UNet2DConditionModel, __import__("pathlib").Path({folder!r}), "unet", method,
                                 dtype=torch.float32, device=torch.device("cpu"), cache=None)
    to_q = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1.to_q
    through_diffusers = [route, type(to_q.weight).__name__, unet.hf_quantizer is not None]
print(json.dumps({{"hidden": hidden, "refusal": refusal, "by_hand": type(by_hand[0].weight).__name__,
                   "through_diffusers": through_diffusers}}))
"""


@pytest.mark.skipif(importlib.util.find_spec("torchao") is None,
                    reason="needs torchao installed (requirements-dev.txt)")
@pytest.mark.parametrize("option", ["none", "torchao-int8"])
def test_start_up_leaves_the_configured_quantizer_visible_to_diffusers(option: str, tmp_path: Path) -> None:
    """Started with ``quantization: torchao-int8`` (webui.warm_up's call), diffusers sees torchao and loads a UNet
    quantized through its TorchAoConfig; started without, torchao stays out of the start path, diffusers is blind
    to it, and the method says so and quantizes by hand instead."""
    code = START_WITH_OPTION.format(repo=str(REPO), option=option, folder=str(tmp_path))
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["by_hand"] == "Int8Tensor"
    if option == "none":
        assert "torchao" in result["hidden"] and "restart Easel" in result["refusal"]
        assert result["through_diffusers"] is None
    else:
        assert "torchao" not in result["hidden"] and result["refusal"] is None
        assert result["through_diffusers"] == ["diffusers", "Int8Tensor", True]
