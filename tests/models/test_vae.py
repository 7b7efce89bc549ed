"""External VAEs (``sd_vae``): resolved as A1111 resolves them, really applied, put back after the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modules.core.errors import UserInputError
from modules.core.settings import Options
from modules.models.vae import VaeService, file_sha256, list_vaes, resolve_vae
from tests.vaes import write_vae


def _run(model: Any, vaes: VaeService | None, sd_vae: str) -> tuple[np.ndarray, str, Any]:
    from modules.processing.params import Txt2ImgParams
    from modules.processing.processor import Processor
    from modules.processing.run import ProcessingRun
    from modules.processing.samplers import build_default_registry

    processor = Processor(samplers=build_default_registry(), model_provider=lambda run: model, vaes=vaes)
    params = Txt2ImgParams(prompt="a red circle", steps=2, width=64, height=64, seed=11, sampler_name="Euler")
    result = processor.process(ProcessingRun(params, Options(sd_vae=sd_vae)))
    return np.asarray(result.images[0]).astype(int), result.infotexts[0], result.run


def test_resolution_follows_a1111(tmp_path: Path) -> None:
    folder = tmp_path / "VAE"
    for name in ("model.vae.safetensors", "other.safetensors", "old.pt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    (folder / "diffusers-vae").mkdir()
    (folder / "diffusers-vae" / "config.json").write_text("{}")
    (folder / "diffusers-vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    vaes = list_vaes(folder)
    assert [vae.name for vae in vaes] == ["diffusers-vae", "model.vae.safetensors", "old.pt", "other.safetensors"]
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"x")
    assert resolve_vae("Automatic", checkpoint, vaes).name == "model.vae.safetensors"  # named after the checkpoint
    assert resolve_vae("Automatic", tmp_path / "unrelated.safetensors", vaes) is None  # the checkpoint's own
    assert resolve_vae("None", checkpoint, vaes) is None
    assert resolve_vae("other.safetensors", checkpoint, vaes).name == "other.safetensors"
    assert resolve_vae("other", checkpoint, vaes).name == "other.safetensors"  # the name without extension
    with pytest.raises(UserInputError) as refused:
        resolve_vae("missing.safetensors", checkpoint, vaes)
    assert refused.value.field == "sd_vae" and "other.safetensors" in refused.value.reason


def test_a_chosen_vae_changes_pixels_and_is_put_back(loaded: Any, tmp_path: Path) -> None:
    folder = tmp_path / "VAE"
    ldm_file = write_vae(loaded, folder / "alt.safetensors", layout="ldm")
    write_vae(loaded, folder / "alt-diffusers.safetensors", layout="diffusers")
    service = VaeService(folder)
    own_vae = loaded.pipe.vae

    base, base_info, _ = _run(loaded, service, "Automatic")  # no VAE named after tiny-sd: the checkpoint's own
    assert "VAE" not in base_info
    alt, alt_info, run = _run(loaded, service, "alt.safetensors")
    assert np.abs(alt - base).mean() > 1.0  # a different decoder: different pixels
    assert "VAE: alt.safetensors" in alt_info and f"VAE hash: {file_sha256(ldm_file)[:10]}" in alt_info
    assert run.sd_vae_name == "alt.safetensors"
    assert loaded.pipe.vae is own_vae  # put back when the run ended
    same_weights, _, _ = _run(loaded, service, "alt-diffusers.safetensors")
    assert np.array_equal(same_weights, alt)  # LDM and diffusers layouts of one VAE decode alike
    again, none_info, _ = _run(loaded, service, "None")
    assert np.array_equal(again, base) and "VAE" not in none_info


def test_automatic_picks_the_vae_named_after_the_checkpoint(loaded: Any, tmp_path: Path) -> None:
    folder = tmp_path / "VAE"
    write_vae(loaded, folder / "tiny-sd.vae.safetensors", seed=5)
    base, _, _ = _run(loaded, None, "Automatic")  # no VAE service: nothing is applied, nothing claimed
    auto, info, _ = _run(loaded, VaeService(folder), "Automatic")
    assert "VAE: tiny-sd.vae.safetensors" in info and not np.array_equal(auto, base)


def test_a_vae_of_another_architecture_is_a_422(loaded: Any, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "VAE"
    folder.mkdir()
    save_file({"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}, str(folder / "wrong.safetensors"))
    with pytest.raises(UserInputError) as refused:
        _run(loaded, VaeService(folder), "wrong.safetensors")
    assert refused.value.field == "sd_vae"
    own, _, _ = _run(loaded, VaeService(folder), "None")
    assert own.shape == (64, 64, 3)
