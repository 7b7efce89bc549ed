"""Wildcards: ``__name__`` in a prompt is replaced by a random line of ``wildcards/name.txt`` (nested, with a
depth limit; names never leave the wildcards folder)."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

log = logging.getLogger(__name__)

_WILDCARD_RE = re.compile(r"__([\w\-/.]+?)__")


def _wildcard_lines(folder: Path, name: str) -> list[str] | None:
    if ".." in Path(name).parts or name.startswith("/"):
        return None
    path = folder / f"{name}.txt"
    try:
        if not path.resolve().is_relative_to(folder.resolve()) or not path.is_file():
            return None
        raw = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in raw.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def expand_wildcards(prompt: str, folder: Path, rng: random.Random, *, max_depth: int = 10) -> str:
    """Replace each ``__name__`` with a random line of ``folder/name.txt`` (``__dir/name__`` for subfolders).

    Chosen lines may contain wildcards themselves; expansion repeats up to ``max_depth`` rounds so a
    self-referencing file cannot loop forever. Unknown names stay in the prompt as written, so a typo is
    visible in the output instead of vanishing. Blank lines and ``#`` comments are skipped. ``rng`` is the
    caller's (seeded per image) so a seed reproduces the same choices.
    """
    folder = Path(folder)
    cache: dict[str, list[str] | None] = {}

    def choose(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in cache:
            cache[name] = _wildcard_lines(folder, name)
        lines = cache[name]
        return rng.choice(lines) if lines else match.group(0)

    for _ in range(max_depth):
        expanded = _WILDCARD_RE.sub(choose, prompt)
        if expanded == prompt:
            break
        prompt = expanded
    return prompt
