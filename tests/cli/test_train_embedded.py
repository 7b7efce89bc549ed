"""cli/train_embedded.py at toy length: every stage runs, a resumed run reaches the same weights bit for bit, and the
UNet grows its 16x16 attention without changing what it computes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cli import train_embedded
from tools.embedded import architecture

# Two VAE steps, two decoder steps, six UNet steps (3 + a 3-step restart cycle) growing attention as step 3 begins;
# the prompt-mismatch and colourless-prompt phases start early so that the toy run passes through all of them.
TOY = ["--threads", "1", "--vae-steps", "2", "--vae-batch", "2", "--decoder-steps", "2", "--decoder-batch", "2",
       "--steps", "3", "--warmup", "1", "--decay-start", "2", "--batch", "4", "--restarts", "3:1e-4",
       "--grow-attention-at", "3", "--mismatch-from", "0", "--mismatch-below", "1000", "--mismatch", "0.5",
       "--mismatch-keeps-shape-from", "2", "--omit-colour-from", "1", "--checkpoint-every", "1"]
WEIGHTS = ("unet_ckpt.safetensors", "unet_ema.safetensors", "text_encoder.safetensors", "vae.safetensors",
           "vae_decoder.safetensors")


@pytest.fixture(autouse=True)
def _restore_threads():
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def _run(work: Path, *extra: str) -> None:
    assert train_embedded.main([*TOY, "--work-dir", str(work), "--out", str(work / "export"), *extra]) == 0


def test_resumed_training_reaches_the_same_weights_and_exports_a_pipeline(tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run(straight)
    _run(resumed, "--stop-after", "2")  # stops before the growth step, in the first layout
    assert json.loads((resumed / "state.json").read_text())["step"] == 2
    assert "down_blocks.0.attentions.0.proj_out.weight" not in load_file(str(resumed / "unet_ckpt.safetensors"))
    _run(resumed, "--stop-after", "4")  # grows, then stops with the grown optimizer state on disk
    _run(resumed)
    for name in WEIGHTS:
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys(), name
        assert all(torch.equal(a[key], b[key]) for key in a), name

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(straight / "export"))
    assert pipe.unet.config.down_block_types[0] == "CrossAttnDownBlock2D"
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    # The exported UNet is the EMA, which has moved the new attention off zero.
    assert pipe.unet.down_blocks[0].attentions[0].proj_out.weight.abs().sum() > 0
    meta = json.loads((straight / "export" / "training.json").read_text())
    assert (meta["unet_steps"], meta["planned_unet_steps"], meta["decoder_steps"]) == (6, 6, 2)
    log = (straight / "train.log").read_text()
    assert "grew 16x16 attention" in log and "exported step 6" in log


def test_growing_attention_keeps_the_unet_function() -> None:
    torch.manual_seed(0)
    unet = architecture.build_unet(full_resolution_attention=False).eval()
    grown = architecture.grow_full_resolution_attention(unet).eval()
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in unet.parameters())
    sample, hidden = torch.randn(2, 4, 16, 16), torch.randn(2, 77, architecture.TEXT_HIDDEN)
    with torch.no_grad():
        before = unet(sample, torch.tensor([900, 50]), hidden).sample
        after = grown(sample, torch.tensor([900, 50]), hidden).sample
    assert torch.equal(before, after)
    with pytest.raises(ValueError, match="without 16x16 attention"):
        architecture.grow_full_resolution_attention(grown)


def test_optimizer_state_follows_parameters_by_name() -> None:
    moments = {"exp_avg": torch.ones(1)}
    old = {"state": {0: moments, 1: {"exp_avg": torch.zeros(1)}}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}
    carried = train_embedded.carry_optimizer_state(old, ["a", "b"], ["a", "new", "c"])
    assert carried["state"] == {0: moments}
    assert carried["param_groups"] == [{"lr": 0.1, "params": [0, 1, 2]}]
