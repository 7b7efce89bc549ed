"""Regenerate configs/tokenizers/clip (vocab.json, merges.txt) from the BPE list in the open-clip-torch wheel.

Usage: python -m cli.build_clip_tokenizer [--source WHEEL_OR_TXT_GZ] [--out DIR]
Without --source the wheel is fetched from the package registry with `pip download --no-deps` (never a hub),
and never installed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from modules.models.families.base import TOKENIZER_DIR
from tools.clip_tokenizer import read_bpe_text, write_tokenizer


def download_wheel(directory: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "open-clip-torch",
        "-d",
        str(directory),
    ]
    subprocess.run(command, check=True)
    wheels = sorted(directory.glob("open_clip_torch-*.whl"))
    if not wheels:
        raise SystemExit("pip download produced no open_clip_torch wheel")
    return wheels[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="open_clip_torch-*.whl or bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("--out", type=Path, default=TOKENIZER_DIR)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or download_wheel(Path(tmp))
        written = write_tokenizer(read_bpe_text(source), args.out)
    for path in written:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
