"""A tiny external VAE for the tests of ``sd_vae``: the loaded model's VAE architecture with other weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_vae(model: Any, path: Path, *, seed: int = 123, layout: str = "ldm") -> Path:
    """A VAE with the tiny model's architecture and other (seeded random) weights, as a single .safetensors file,
    in the original LDM key layout (as shared VAEs are) or in diffusers' layout."""
    import torch
    from safetensors.torch import save_file

    from tools.ldm_convert import vae_to_ldm

    torch.manual_seed(seed)
    module = type(model.pipe.vae).from_config(model.pipe.vae.config)
    state = {key: value.contiguous() for key, value in module.state_dict().items()}
    if layout == "ldm":
        state = vae_to_ldm(state, module.config)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path
