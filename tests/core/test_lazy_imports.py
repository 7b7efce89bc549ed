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
