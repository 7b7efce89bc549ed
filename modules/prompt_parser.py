"""A1111's ``modules.prompt_parser`` names for drop-in extensions, answered by Easel's prompt parser
(:mod:`modules.processing.prompt_parser`): prompt-editing schedules and attention weights."""

from __future__ import annotations

import re
from collections import namedtuple
from typing import Any

from modules.processing.prompt_parser import BREAK_WEIGHT, parse_attention, parse_prompt_schedules, split_composable

re_attention = re.compile(r"""
\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:
""", re.X)
re_break = re.compile(r"\s*\bBREAK\b\s*", re.S)
re_weight = re.compile(r"^((?:\s|.)*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$")

ScheduledPromptConditioning = namedtuple("ScheduledPromptConditioning", ["end_at_step", "cond"])
ComposableScheduledPromptConditioning = namedtuple("ComposableScheduledPromptConditioning", ["schedules", "weight"])


class SdConditioning(list):  # type: ignore[type-arg]
    """A list of prompts plus the image size and whether they are negative prompts (A1111's class)."""

    def __init__(self, prompts: Any, is_negative_prompt: bool = False, width: int | None = None,
                 height: int | None = None, copy_from: Any = None) -> None:
        super().__init__()
        self.extend(prompts)
        if copy_from is None:
            copy_from = prompts
        self.is_negative_prompt = is_negative_prompt or getattr(copy_from, "is_negative_prompt", False)
        self.width = width or getattr(copy_from, "width", None)
        self.height = height or getattr(copy_from, "height", None)


def get_learned_conditioning_prompt_schedules(prompts: list[str], base_steps: int, hires_steps: int | None = None,
                                              use_old_scheduling: bool = False) -> list[list[list[Any]]]:
    """``[[[end_step, text], ...] per prompt]``: A1111's schedule lists (prompt editing and alternation)."""
    steps = hires_steps or base_steps
    return [[[end, text] for end, text in parse_prompt_schedules(prompt, steps)] for prompt in prompts]


def parse_prompt_attention(text: str) -> list[list[Any]]:
    """``[[text, weight], ...]``; ``BREAK`` is ``["BREAK", -1]`` as in A1111."""
    return [[part, weight if weight != BREAK_WEIGHT else -1] for part, weight in parse_attention(text)]


def get_multicond_prompt_list(prompts: list[str]) -> tuple[list[list[tuple[int, float]]], list[str], dict[str, int]]:
    """A1111's composable-diffusion split: per prompt the ``(index, weight)`` of each ``AND`` part."""
    res_indexes: list[list[tuple[int, float]]] = []
    prompt_indexes: dict[str, int] = {}
    flat_prompts: list[str] = []
    for prompt in prompts:
        indexes = []
        for text, weight in split_composable(prompt):
            index = prompt_indexes.get(text)
            if index is None:
                index = len(flat_prompts)
                flat_prompts.append(text)
                prompt_indexes[text] = index
            indexes.append((index, weight))
        res_indexes.append(indexes)
    return res_indexes, flat_prompts, prompt_indexes
