"""Convert diffusers-layout state dicts back to the original LDM / sgm single-file layout.

diffusers ships only the other direction (single file -> diffusers); we need this one to write checkpoints in
the layout users share (tests build tiny single files with it, and a future "save as .safetensors" tool can use
it). The fixed key tables come from diffusers' own `DIFFUSERS_TO_LDM_MAPPING`, inverted, so the two directions
cannot drift apart; only the block-index arithmetic is written here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING as _MAPPING

# diffusers types the table loosely (dict[str, object]); it is nested str -> str maps.
DIFFUSERS_TO_LDM_MAPPING: dict[str, Any] = _MAPPING

_UNET_RESNET_NAMES = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("time_emb_proj", "emb_layers.1"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("conv_shortcut", "skip_connection"),
)
_VAE_ATTENTION_NAMES = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


def _rename_resnet(rest: str) -> str:
    for diffusers_name, ldm_name in _UNET_RESNET_NAMES:
        if rest.startswith(diffusers_name + "."):
            return ldm_name + rest[len(diffusers_name) :]
    return rest


def unet_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """A UNet2DConditionModel state dict in `model.diffusion_model.` (openaimodel) naming, without the prefix."""
    per_block = int(config["layers_per_block"]) + 1  # LDM counts the down/upsampler as a block slot
    up_types = list(config["up_block_types"])
    fixed = dict(DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"])
    if config.get("addition_embed_type") == "text_time":
        fixed.update(DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"])
    if config.get("class_embed_type") in ("timestep", "projection"):
        fixed.update(DIFFUSERS_TO_LDM_MAPPING["unet"]["class_embed_type"])
    patterns: list[tuple[re.Pattern[str], Any]] = [
        (
            re.compile(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)"),
            lambda b, j, r: f"input_blocks.{per_block * b + j + 1}.0.{_rename_resnet(r)}",
        ),
        (
            re.compile(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)"),
            lambda b, j, r: f"input_blocks.{per_block * b + j + 1}.1.{r}",
        ),
        (
            re.compile(r"down_blocks\.(\d+)\.downsamplers\.(0)\.conv\.(.+)"),
            lambda b, _j, r: f"input_blocks.{per_block * (b + 1)}.0.op.{r}",
        ),
        (
            re.compile(r"mid_block\.resnets\.(\d+)()\.(.+)"),
            lambda j, _u, r: f"middle_block.{2 * j}.{_rename_resnet(r)}",
        ),
        (re.compile(r"mid_block\.attentions\.(0)()\.(.+)"), lambda _j, _u, r: f"middle_block.1.{r}"),
        (
            re.compile(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)"),
            lambda b, j, r: f"output_blocks.{per_block * b + j}.0.{_rename_resnet(r)}",
        ),
        (
            re.compile(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)"),
            lambda b, j, r: f"output_blocks.{per_block * b + j}.1.{r}",
        ),
        (
            re.compile(r"up_blocks\.(\d+)\.upsamplers\.(0)\.conv\.(.+)"),
            lambda b, _j, r: (
                f"output_blocks.{per_block * b + per_block - 1}.{2 if 'CrossAttn' in up_types[b] else 1}.conv.{r}"
            ),
        ),
    ]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        for pattern, build in patterns:
            match = pattern.fullmatch(key)
            if match:
                first, second, rest = match.groups()
                out[build(int(first), int(second) if second else 0, rest)] = value
                break
        else:
            raise KeyError(f"no LDM name for UNet key {key!r}")
    return out


def vae_to_ldm(state: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """An AutoencoderKL state dict in `first_stage_model.` naming (without the prefix); attention as 1x1 convs."""
    fixed = dict(DIFFUSERS_TO_LDM_MAPPING["vae"])
    up_count = len(config["up_block_types"])
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in fixed:
            out[fixed[key]] = value
            continue
        if match := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            i, j, rest = match.groups()
            out[f"encoder.down.{i}.block.{j}.{rest.replace('conv_shortcut', 'nin_shortcut')}"] = value
        elif match := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            out[f"encoder.down.{match.group(1)}.downsample.conv.{match.group(2)}"] = value
        elif match := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            i, j, rest = match.groups()
            out[f"decoder.up.{up_count - 1 - int(i)}.block.{j}.{rest.replace('conv_shortcut', 'nin_shortcut')}"] = value
        elif match := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            out[f"decoder.up.{up_count - 1 - int(match.group(1))}.upsample.conv.{match.group(2)}"] = value
        elif match := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            side, j, rest = match.groups()
            out[f"{side}.mid.block_{int(j) + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"] = value
        elif match := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            side, rest = match.groups()
            for diffusers_name, ldm_name in _VAE_ATTENTION_NAMES:
                if rest.startswith(diffusers_name):
                    rest = ldm_name + rest[len(diffusers_name) :]
                    break
            if value.ndim == 2:  # the original VAE attention uses 1x1 convolutions
                value = value[:, :, None, None]
            out[f"{side}.mid.attn_1.{rest}"] = value
        else:
            raise KeyError(f"no LDM name for VAE key {key!r}")
    return out


def clip_to_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI CLIP text encoder: the original files keep transformers' names under a `text_model.` wrapper."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        out[key if key.startswith(("text_model.", "text_projection")) else "text_model." + key] = value
    return out


def open_clip_to_ldm(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An OpenCLIP-architecture CLIPTextModel(WithProjection) in open_clip naming (fused qkv, `resblocks`)."""
    fixed = {
        key.removeprefix("text_model."): value for key, value in DIFFUSERS_TO_LDM_MAPPING["openclip"]["layers"].items()
    }
    layer_names = (
        ("layer_norm1", "ln_1"),
        ("layer_norm2", "ln_2"),
        ("mlp.fc1", "mlp.c_fc"),
        ("mlp.fc2", "mlp.c_proj"),
        ("self_attn.out_proj", "attn.out_proj"),
    )
    plain = {key.removeprefix("text_model."): value for key, value in state.items() if not key.endswith("position_ids")}
    out: dict[str, torch.Tensor] = {}
    fused: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in plain.items():
        if key in fixed:
            out[fixed[key]] = value.T.contiguous() if key == "text_projection.weight" else value
            continue
        match = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", key)
        if match is None:
            raise KeyError(f"no open_clip name for text encoder key {key!r}")
        index, rest = match.groups()
        if qkv := re.fullmatch(r"self_attn\.([qkv])_proj\.(weight|bias)", rest):
            fused.setdefault((index, qkv.group(2)), {})[qkv.group(1)] = value
            continue
        for hf_name, oc_name in layer_names:
            if rest.startswith(hf_name + "."):
                rest = oc_name + rest[len(hf_name) :]
                break
        else:
            raise KeyError(f"no open_clip name for text encoder key {key!r}")
        out[f"transformer.resblocks.{index}.{rest}"] = value
    for (index, kind), parts in fused.items():
        out[f"transformer.resblocks.{index}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def prefixed(prefix: str, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}
