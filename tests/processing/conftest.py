"""Tiny real CLIP tokenizers, text encoders and diffusers pipelines for the processing tests (no hub access)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
WORDS = ("cat", "dog", "photo", "red", "blue", "house", "sky", "man")  # merge ranks do not conflict


def _word_merges(word: str) -> list[tuple[str, str]]:
    symbols = [*word[:-1], word[-1] + "</w>"]
    merges = []
    merged = symbols[0]
    for symbol in symbols[1:]:
        merges.append((merged, symbol))
        merged += symbol
    return merges


def build_clip_tokenizer(folder: Path, *, pad_token: str = EOS, words: tuple[str, ...] = WORDS) -> CLIPTokenizer:
    """A byte-level CLIP BPE tokenizer: every printable character, plus whole-word merges for ``words``.

    Written to ``folder`` and loaded with ``from_pretrained`` (transformers 5 needs the files). EOS is the
    last id, as in CLIP, so the legacy argmax pooling also finds it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    chars = [c for c in string.printable if not c.isspace()]
    vocab: dict[str, int] = {}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    for c in chars:
        vocab.setdefault(c + "</w>", len(vocab))
    merges: list[tuple[str, str]] = []
    for word in words:
        for left, right in _word_merges(word):
            if (left, right) not in merges:
                merges.append((left, right))
                vocab.setdefault(left + right, len(vocab))
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = {"model_max_length": 77, "bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    return CLIPTokenizer.from_pretrained(folder)


def build_text_encoder(
    tokenizer: CLIPTokenizer, *, hidden: int = 32, layers: int = 3, projection: int | None = None, seed: int = 0
) -> CLIPTextModel | CLIPTextModelWithProjection:
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=projection or hidden,
    )
    model = CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)
    # A fresh LayerNorm (weight 1, bias 0) makes every token's mean exactly 0; trained CLIP norms are not like
    # that, and "Original" emphasis divides by the mean.
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            torch.nn.init.normal_(module.weight, 1.0, 0.2)
            torch.nn.init.normal_(module.bias, 0.1, 0.2)
    return model.eval()


@pytest.fixture(scope="session")
def clip_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> CLIPTokenizer:
    return build_clip_tokenizer(tmp_path_factory.mktemp("clip_tokenizer"))


@pytest.fixture(scope="session")
def sd_pipe(clip_tokenizer: CLIPTokenizer):
    """A tiny real StableDiffusionPipeline (16×16 images, 32-wide text encoder)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=2,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=build_text_encoder(clip_tokenizer),
        tokenizer=clip_tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def sdxl_pipe(tmp_path_factory: pytest.TempPathFactory, clip_tokenizer: CLIPTokenizer):
    """A tiny real StableDiffusionXLPipeline; the second tokenizer pads with "!" like SDXL's CLIP-G one."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    tokenizer_2 = build_clip_tokenizer(tmp_path_factory.mktemp("clip_tokenizer_2"), pad_token="!")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=2,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 16,
        cross_attention_dim=32 + 48,
        norm_num_groups=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=2,
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=build_text_encoder(clip_tokenizer, seed=1),
        text_encoder_2=build_text_encoder(tokenizer_2, hidden=48, projection=16, seed=2),
        tokenizer=clip_tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerDiscreteScheduler(),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
