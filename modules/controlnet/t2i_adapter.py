"""T2I-Adapters: diffusers ``T2IAdapter`` weights, their fit to the loaded UNet, and the control-map size.

An adapter turns the control map into one feature map per UNet level once per denoising pass; the UNet adds
them inside its down blocks (``down_intrablock_additional_residuals``). A diffusers folder carries its config;
a single diffusers-layout ``.safetensors`` file does not, so the config is read off the tensor shapes. Full and
SDXL adapters have identical tensors (they differ only in where the weight-free pooling sits), so a single file's
type follows the loaded UNet: SDXL-type UNets get ``full_adapter_xl``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from modules.core.errors import NotFoundError, UserInputError

XL_TYPE = "full_adapter_xl"


def load_t2i_adapter(path: Path, base_unet: Any) -> Any:
    from diffusers import T2IAdapter

    if path.is_dir():
        adapter = T2IAdapter.from_pretrained(str(path), local_files_only=True)
    else:
        adapter = _load_single_file(path, base_unet)
    return adapter.eval().requires_grad_(False)


def _load_single_file(path: Path, base_unet: Any) -> Any:
    import torch
    from diffusers import T2IAdapter
    from safetensors.torch import load_file

    if base_unet is None:
        raise NotFoundError(f"T2I-Adapter {path.name} is a single file; load a checkpoint first to derive its config")
    state = load_file(str(path))
    config = adapter_config(state, is_xl_unet(base_unet.config))
    with torch.device("meta"):
        adapter = T2IAdapter(**config)
    missing, unexpected = adapter.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise UserInputError("model", f"T2I-Adapter {path.name} has an unknown layout ({len(missing)} missing, "
                                      f"{len(unexpected)} unexpected tensors); use a diffusers folder")
    return adapter


def adapter_config(state: dict[str, Any], xl: bool) -> dict[str, Any]:
    """``T2IAdapter`` arguments of a diffusers-layout state dict (full, SDXL or light adapter)."""
    light = "adapter.conv_in.weight" not in state
    resnet = "adapter.body.{}.resnets.{}.block1.weight"
    blocks = 0
    while resnet.format(blocks, 0) in state:
        blocks += 1
    res_blocks = 0
    while resnet.format(0, res_blocks) in state:
        res_blocks += 1
    if blocks == 0 or res_blocks == 0:
        raise UserInputError("model", "not a diffusers-layout T2I-Adapter (no adapter.body.N.resnets tensors)")
    if light:
        channels = [state[f"adapter.body.{index}.out_conv.weight"].shape[0] for index in range(blocks - 1)]
        unshuffled = state["adapter.body.0.in_conv.weight"].shape[1]
    else:
        channels = [state[resnet.format(index, 0)].shape[0] for index in range(blocks)]
        unshuffled = state["adapter.conv_in.weight"].shape[1]
    in_channels, factor = _split_unshuffled(unshuffled)
    return {"in_channels": in_channels, "channels": channels, "num_res_blocks": res_blocks,
            "downscale_factor": factor, "adapter_type": "light_adapter" if light else (XL_TYPE if xl else
                                                                                        "full_adapter")}


def _split_unshuffled(channels: int) -> tuple[int, int]:
    """``in_channels * downscale_factor**2`` -> both (RGB adapters first, then one-channel sketch adapters)."""
    for in_channels in (3, 1):
        factor = math.isqrt(channels // in_channels)
        if channels % in_channels == 0 and factor * factor * in_channels == channels:
            return in_channels, factor
    raise UserInputError("model", f"T2I-Adapter input of {channels} channels is not 3 or 1 pixel-unshuffled")


def is_xl_unet(config: Any) -> bool:
    return config.get("addition_embed_type") == "text_time"


def feature_channels(config: Any) -> list[int]:
    """Channels of the features an adapter returns, in the order the UNet consumes them."""
    channels = list(config.get("channels", ()))
    return [*channels, channels[-1]] if config.get("adapter_type") == "light_adapter" and channels else channels


def check_adapter_fits(adapter: Any, unet: Any, vae_scale: int, name: str, field: str) -> None:
    """Refuse an adapter of another family, or one whose features would not meet the UNet's levels in width or
    size (a full adapter's first feature is latent-sized, an SDXL adapter's half that)."""
    own, base = adapter.config, unet.config
    xl_adapter, xl_unet = own.get("adapter_type") == XL_TYPE, is_xl_unet(base)
    if xl_adapter != xl_unet:
        wanted = "SDXL" if xl_adapter else "SD1.x/2.x"
        loaded = "SDXL-type" if xl_unet else "SD1.x/2.x-type"
        raise UserInputError(field, f"T2I-Adapter {name!r} ({own.get('adapter_type')}) is for {wanted} models but "
                                    f"the loaded checkpoint is {loaded}; choose an adapter of the checkpoint's family")
    blocks = list(base.get("block_out_channels", ()))
    consumed = [*blocks, blocks[-1]] if blocks else []  # every down block, then the mid block
    channels = feature_channels(own)
    if channels != consumed[:len(channels)]:
        raise UserInputError(field, f"T2I-Adapter {name!r} gives features of {channels} channels but the loaded "
                                    f"checkpoint's UNet blocks have {blocks}")
    factor = int(own.get("downscale_factor", 8))
    expected = vae_scale * (2 if xl_adapter else 1)
    if factor != expected:
        raise UserInputError(field, f"T2I-Adapter {name!r} has downscale_factor {factor}; the loaded checkpoint "
                                    f"needs {expected} (VAE scale {vae_scale}), so it is for another model family")


def control_size(adapter: Any, width: int, height: int, vae_scale: int) -> tuple[int, int]:
    """The control-map size whose first feature map has the spatial size of the UNet level it is added to.

    The first feature is ``pixels / downscale_factor``; it meets the latent (full adapters, factor = VAE scale)
    or the latent after one stride-2 block (SDXL adapters, factor = 2 x VAE scale), which rounds up, as the
    adapter's ceil-mode pooling does for the deeper levels. So odd latent sizes fit too.
    """
    factor = int(adapter.config.get("downscale_factor", 8))
    ratio = max(1, factor // vae_scale)
    latent_w, latent_h = width // vae_scale, height // vae_scale
    return -(-latent_w // ratio) * factor, -(-latent_h // ratio) * factor
