"""Build the CLIP BPE tokenizer files (vocab.json + merges.txt) from the BPE list that open_clip ships.

OpenAI's CLIP tokenizer is defined by a merge list (`bpe_simple_vocab_16e6.txt.gz`, shipped inside the
`open-clip-torch` wheel) plus a fixed construction of the vocabulary from it. transformers needs the result as
vocab.json + merges.txt; no well-kept library writes them from the merge list, so this module does, which lets
Easel carry its tokenizer without ever contacting a model hub.
"""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

from modules.core.atomic import atomic_write_text

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# CLIP's vocabulary is 49408 tokens: 256 byte symbols, their 256 word-final forms, the merges, two specials.
VOCAB_SIZE = 49408
MERGE_COUNT = VOCAB_SIZE - 256 * 2 - 2  # 48894: lines 1..48894 of the BPE file (line 0 is its version header)
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table that byte-level BPE vocabularies are written in.

    Insertion order matters: printable bytes first, then the remapped ones; CLIP's ids follow this order.
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def build_vocab_and_merges(bpe_text: str) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The token -> id map and the ordered merge pairs, constructed exactly as CLIP's reference tokenizer does."""
    lines = bpe_text.split("\n")
    merges = [tuple(line.split()) for line in lines[1 : MERGE_COUNT + 1]]
    if len(merges) != MERGE_COUNT or any(len(pair) != 2 for pair in merges):
        raise ValueError(f"BPE file has fewer than {MERGE_COUNT} well-formed merge lines")
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    tokens += ["".join(pair) for pair in merges]
    tokens += [START_TOKEN, END_TOKEN]
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"built {len(vocab)} distinct tokens, expected {VOCAB_SIZE}")
    return vocab, [(a, b) for a, b in merges]


def read_bpe_text(source: Path) -> str:
    """The BPE list from the .txt.gz itself or from an open-clip-torch wheel that contains it."""
    source = Path(source)
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            data = wheel.read(BPE_MEMBER)
    else:
        data = source.read_bytes()
    return gzip.decompress(data).decode("utf-8")


def tokenizer_config(pad_token: str = END_TOKEN) -> dict[str, object]:
    return {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": START_TOKEN,
        "eos_token": END_TOKEN,
        "unk_token": END_TOKEN,
        "pad_token": pad_token,
        "model_max_length": 77,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
    }


def write_tokenizer(bpe_text: str, out_dir: Path, *, pad_token: str = END_TOKEN) -> list[Path]:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json into `out_dir`."""
    vocab, merges = build_vocab_and_merges(bpe_text)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = tokenizer_config(pad_token)
    special = {key: config[key] for key in ("bos_token", "eos_token", "unk_token", "pad_token")}
    files = {
        "vocab.json": json.dumps(vocab, ensure_ascii=False, separators=(",", ":")) + "\n",
        "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
        "tokenizer_config.json": json.dumps(config, indent=2) + "\n",
        "special_tokens_map.json": json.dumps(special, indent=2) + "\n",
    }
    written = []
    for name, text in files.items():
        atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
    return written
