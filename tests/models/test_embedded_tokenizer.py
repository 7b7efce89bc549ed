"""The tokenizer our code builds is a real CLIPTokenizer where each vocabulary word is one token."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import CLIPTokenizer

from tools.embedded.shapes import VOCABULARY
from tools.embedded.tokenizer import BOS_TOKEN, EOS_TOKEN, write_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(str(tokenizer_dir))


def test_folder_has_the_clip_files(tokenizer_dir: Path) -> None:
    names = {path.name for path in tokenizer_dir.iterdir()}
    assert {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"} <= names
    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == len(set(vocab.values()))
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert "a</w>" in vocab and "!" in vocab and "!</w>" in vocab
    assert vocab[EOS_TOKEN] == len(vocab) - 1 and vocab[BOS_TOKEN] == len(vocab) - 2


def test_every_vocabulary_word_is_one_token(tokenizer: CLIPTokenizer) -> None:
    assert len(tokenizer) > 512
    for word in VOCABULARY:
        pieces = tokenizer.tokenize(word)
        assert pieces == [f"{word}</w>"], (word, pieces)


def test_prompt_round_trip(tokenizer: CLIPTokenizer) -> None:
    prompt = "a small red circle on a blue background"
    ids = tokenizer(prompt).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) == len(prompt.split()) + 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == prompt
    padded = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(padded) == 77


def test_unknown_words_fall_back_to_byte_pieces(tokenizer: CLIPTokenizer) -> None:
    pieces = tokenizer.tokenize("a zebra")
    assert pieces[0] == "a</w>"
    assert "".join(pieces[1:]) == "zebra</w>" and len(pieces) > 2
    ids = tokenizer("a zebra, çava!").input_ids
    assert tokenizer.unk_token_id not in ids[1:-1]
    # CLIP splits punctuation into words of its own, so decoding puts a space before it.
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == "azebra,çava!"
    assert tokenizer.tokenize("RED Circle") == ["red</w>", "circle</w>"]
