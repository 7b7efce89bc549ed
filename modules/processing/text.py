"""Text conditioning for a batch: prompt schedules and composable sub-prompts turned into step functions.

The prompt syntax itself lives in :mod:`modules.processing.prompt_parser` and the weighted CLIP encoding in
:mod:`modules.processing.conditioning`; this module only arranges their output per batch and per step for the
denoising loop (:mod:`modules.processing.engine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from modules.processing.engine import Conditioning, CondSchedule, pad_token_length
from modules.processing.prompt_parser import prompt_at_step


@dataclass
class BatchConditioning:
    uncond: CondSchedule
    conds: list[tuple[CondSchedule, float]]


class TextConditioner:
    """Encodes the prompts of one batch into step functions, caching each distinct text once per batch."""

    def __init__(self, pipe: Any, *, clip_skip: int = 1, emphasis: str = "Original",
                 embeddings: dict[str, torch.Tensor] | None = None) -> None:
        from modules.processing.conditioning import PromptEncoder

        self.pipe = pipe
        # the execution device, looked up once per conditioner: the processor reuses it for the batch's latents
        self.execution_device: torch.device | None = getattr(pipe, "_execution_device", None)
        self.encoder = PromptEncoder.from_pipeline(pipe, embeddings=embeddings, device=self.execution_device)
        self.clip_skip = clip_skip
        self.emphasis = emphasis
        self._cache: dict[str, Conditioning] = {}

    def encode_text(self, text: str) -> Conditioning:
        cached = self._cache.get(text)
        if cached is None:
            encoded = self.encoder.encode(text, clip_skip=self.clip_skip, emphasis=self.emphasis)
            cached = Conditioning(encoded.embeds, getattr(encoded, "pooled", None))
            self._cache[text] = cached
        return cached

    def batch(self, prompts: Sequence[str], negatives: Sequence[str], steps: int) -> BatchConditioning:
        from modules.processing.prompt_parser import parse_prompt_schedules, split_composable

        per_item_conds = [split_composable(prompt) for prompt in prompts]
        width = max(len(conds) for conds in per_item_conds)
        neg_schedules = [parse_prompt_schedules(negative, steps) for negative in negatives]
        cond_schedules = [
            [(parse_prompt_schedules(text, steps), weight) for text, weight in conds] for conds in per_item_conds
        ]
        uncond = self._step_function([sched for sched in neg_schedules])
        conds: list[tuple[CondSchedule, float]] = []
        for slot in range(width):
            slot_schedules = [items[slot][0] if slot < len(items) else items[0][0] for items in cond_schedules]
            weights = {items[slot][1] if slot < len(items) else 0.0 for items in cond_schedules}
            conds.append((self._step_function(slot_schedules), weights.pop() if len(weights) == 1 else 1.0))
        return BatchConditioning(uncond, conds)

    def _step_function(self, schedules: list[list[tuple[int, str]]]) -> CondSchedule:
        """A function step -> batch conditioning; tensors are reused between steps where nothing changes."""
        memo: dict[tuple[str, ...], Conditioning] = {}

        def at(step: int) -> Conditioning:
            texts = tuple(prompt_at_step(schedule, step) for schedule in schedules)
            found = memo.get(texts)
            if found is None:
                parts = [self.encode_text(text) for text in texts]
                found = _stack(parts)
                memo[texts] = found
            return found

        return at


def _stack(parts: list[Conditioning]) -> Conditioning:
    longest = max(part.embeds.shape[1] for part in parts)
    embeds = [pad_token_length(part.embeds, longest) for part in parts]
    pooled = [part.pooled for part in parts if part.pooled is not None]
    stacked = torch.cat(embeds) if len(embeds) > 1 else embeds[0]
    return Conditioning(stacked, (torch.cat(pooled) if len(pooled) > 1 else pooled[0]) if pooled else None)
