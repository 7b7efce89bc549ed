"""Builds a CLIP-format byte-level BPE tokenizer for the embedded model from our own word list.

No tokenizer can be downloaded, so we write the four files `transformers.CLIPTokenizer.from_pretrained` reads.
The merges are learnt by a tiny BPE trainer over the word list (each word weighted equally) and run until every
word is a single `<word></w>` token; learning them this way (rather than writing prefix chains by hand) keeps
every intermediate merge consistent with the vocabulary, so no word is split into odd pieces. The 256 byte-level
base symbols and their `</w>` variants make any other word tokenizable piece by piece.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

from tools.embedded.shapes import VOCABULARY

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
MODEL_MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map (a published format fact, rewritten here)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes, strict=True)}


def learn_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Greedy BPE training on the word list until each word is one symbol; ties broken alphabetically."""
    byte_map = bytes_to_unicode()
    sequences: list[list[str]] = []
    for word in dict.fromkeys(w.lower() for w in words):
        symbols = [byte_map[b] for b in word.encode("utf-8")]
        symbols[-1] += END_OF_WORD
        sequences.append(symbols)
    merges: list[tuple[str, str]] = []
    while True:
        counts: Counter[tuple[str, str]] = Counter()
        for symbols in sequences:
            counts.update(pairwise(symbols))
        if not counts:
            return merges
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        merges.append(best)
        joined = best[0] + best[1]
        for index, symbols in enumerate(sequences):
            merged: list[str] = []
            position = 0
            while position < len(symbols):
                if position + 1 < len(symbols) and (symbols[position], symbols[position + 1]) == best:
                    merged.append(joined)
                    position += 2
                else:
                    merged.append(symbols[position])
                    position += 1
            sequences[index] = merged


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """CLIP's vocabulary order: bytes, bytes + `</w>`, one entry per merge, then the two special tokens."""
    base = list(bytes_to_unicode().values())
    tokens = base + [symbol + END_OF_WORD for symbol in base]
    tokens += [left + right for left, right in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    vocab: dict[str, int] = {}
    for token in tokens:
        vocab.setdefault(token, len(vocab))
    return vocab


def write_tokenizer(directory: str | Path, words: Iterable[str] = VOCABULARY) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into `directory`."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    merges = learn_merges(words)
    vocab = build_vocab(merges)
    (target / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{left} {right}" for left, right in merges]
    (target / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    specials = {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "unk_token": EOS_TOKEN, "pad_token": EOS_TOKEN}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        "errors": "replace",
        "clean_up_tokenization_spaces": False,
        **specials,
    }
    (target / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (target / "special_tokens_map.json").write_text(json.dumps(specials, indent=2) + "\n", encoding="utf-8")
    return target


def vocab_size(words: Iterable[str] = VOCABULARY) -> int:
    """Number of ids the text encoder's embedding table needs for this word list."""
    return len(build_vocab(learn_merges(words)))
