"""Prompt text → text-encoder conditioning with A1111 semantics, over diffusers' CLIP tokenizers and encoders.

diffusers' ``encode_prompt`` truncates at 77 tokens and knows no weights, ``BREAK``, prompt editing or ``AND``;
compel covers part of it with different numbers. Nothing maintained reproduces A1111's arithmetic, so this
module does it by hand (``STYLE.md`` rule 6):

* a prompt is cut into chunks of ``model_max_length - 2`` (75) tokens, each encoded as
  ``BOS + 75 tokens + EOS/pad`` and concatenated along the sequence axis (150 tokens → 154 positions);
  ``BREAK`` starts a new chunk, and a chunk that overflows moves the words after its last comma (within
  ``comma_backtrack`` tokens) to the next one;
* per-token weights multiply the hidden states, in one of the emphasis modes of :data:`EMPHASES`;
* clip skip follows A1111 (``1`` = last layer; ``n`` = ``hidden_states[-n]`` then the final layer norm) for
  SD1/SD2 encoders, and diffusers' SDXL convention (penultimate layer, no final norm, ``n`` moves one layer
  further up) when the pipeline has a second encoder;
* textual-inversion vectors are spliced into the token embeddings during the forward pass only, through a
  forward hook that is removed before :meth:`PromptEncoder.encode` returns: the tokenizer and the encoder are
  never modified.

Parity guard: a plain prompt (no weights, at most 75 tokens, no ``BREAK``) at clip skip 1 gives exactly
``pipe.encode_prompt(prompt, device, 1, False)[0]`` (``torch.equal``): same ids, same padding, same call, no
emphasis arithmetic when every weight is 1.

How processing uses it (one :class:`PromptEncoder` per job, built after LoRA is applied)::

    encoder = PromptEncoder.from_pipeline(pipe, embeddings=ti_vectors)
    cond, uncond = encoder.encode_schedules_pair(prompt, negative_prompt, steps, clip_skip=n, emphasis=mode)
    if cond.is_composable:            # AND: diffusers cannot; the sampler needs a custom CFG, see combine_composable
        ...
    kwargs = dict(prompt_embeds=cond.at(0), negative_prompt_embeds=uncond.at(0))
    if cond.pooled_at(0) is not None:  # SDXL
        kwargs.update(pooled_prompt_embeds=cond.pooled_at(0), negative_pooled_prompt_embeds=uncond.pooled_at(0))
    if not (cond.is_static and uncond.is_static):
        callback = ScheduleCallback(cond, uncond, pooled=cond.pooled_at(0) is not None)
        kwargs.update(callback_on_step_end=callback, callback_on_step_end_tensor_inputs=callback.tensor_inputs)
    pipe(**kwargs, num_inference_steps=steps, ...)

Both sides of ``encode_schedules_pair`` (every segment of every sub-prompt) are padded with empty-prompt chunks
to one common length, which classifier-free guidance needs. SDXL's ``force_zeros_for_empty_prompt`` is the
caller's choice (zero ``uncond`` tensors when the negative prompt is empty), as in diffusers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from modules.core.errors import UserInputError
from modules.processing.prompt_parser import (
    BREAK_WEIGHT,
    parse_attention,
    parse_prompt_schedules,
    split_breaks,
    split_composable,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 77
DEFAULT_COMMA_BACKTRACK = 20

EmbeddingVectors = torch.Tensor | Sequence[torch.Tensor]
"""One textual-inversion embedding: ``(n_vectors, hidden)`` for every encoder whose width matches, or one
tensor per encoder in pipeline order (SDXL: ``[clip_l, clip_g]``)."""


def textual_inversion_vectors(state: Mapping[str, Any]) -> EmbeddingVectors:
    """The vectors of a loaded embedding file, in the layouts A1111 users have in ``models/embeddings``.

    A1111 ``.pt`` (``{"string_to_param": {"*": tensor}}``), ``{"emb_params": tensor}``, SDXL
    ``{"clip_l": tensor, "clip_g": tensor}`` (returned as ``(clip_l, clip_g)``, the pipeline's encoder order) and
    diffusers' single-entry ``{token: tensor}``. Raises ``ValueError`` for anything else.
    """
    if "clip_l" in state and "clip_g" in state:
        return (torch.as_tensor(state["clip_l"]), torch.as_tensor(state["clip_g"]))
    params = state.get("string_to_param")
    if isinstance(params, Mapping) and len(params) >= 1:
        return torch.as_tensor(next(iter(params.values())))
    if isinstance(state.get("emb_params"), torch.Tensor):
        return state["emb_params"]
    tensors = [value for value in state.values() if isinstance(value, torch.Tensor)]
    if len(tensors) == 1:
        return tensors[0]
    raise ValueError(f"not a textual-inversion embedding (keys: {', '.join(map(str, list(state)[:8]))})")


# --------------------------------------------------------------------------------------------------------------
# Emphasis modes (A1111 setting "emphasis")
# --------------------------------------------------------------------------------------------------------------


class Emphasis(Protocol):
    """How per-token weights act on one chunk's hidden states ``z`` of shape ``(tokens, hidden)``."""

    name: str
    parses_brackets: bool
    uses_weights: bool

    def apply(self, z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor: ...


class OriginalEmphasis:
    """Multiply, then rescale so the chunk's mean is what it was (A1111's default)."""

    name = "Original"
    parses_brackets = True
    uses_weights = True

    def apply(self, z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
        original_mean = z.float().mean()
        weighted = z.float() * multipliers.float().unsqueeze(-1)
        rescale = original_mean / weighted.mean()
        if not torch.isfinite(rescale):  # a zero-mean chunk has nothing to restore
            return weighted.to(z.dtype)
        return (weighted * rescale).to(z.dtype)


class NoNormEmphasis:
    """Multiply only: ``(a:1.5)`` makes that token's hidden state exactly 1.5 times larger."""

    name = "No norm"
    parses_brackets = True
    uses_weights = True

    def apply(self, z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
        return (z.float() * multipliers.float().unsqueeze(-1)).to(z.dtype)


class IgnoreEmphasis:
    """Brackets are parsed away but their weights are dropped."""

    name = "Ignore"
    parses_brackets = True
    uses_weights = False

    def apply(self, z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
        return z


class NoEmphasis:
    """No emphasis syntax at all: brackets are tokenized as text (``BREAK`` still splits chunks)."""

    name = "None"
    parses_brackets = False
    uses_weights = False

    def apply(self, z: torch.Tensor, multipliers: torch.Tensor) -> torch.Tensor:
        return z


EMPHASES: dict[str, Emphasis] = {}


def register_emphasis(emphasis: Emphasis) -> None:
    if emphasis.name in EMPHASES:
        raise ValueError(f"emphasis mode {emphasis.name!r} is already registered")
    EMPHASES[emphasis.name] = emphasis


for _mode in (OriginalEmphasis(), NoNormEmphasis(), IgnoreEmphasis(), NoEmphasis()):
    register_emphasis(_mode)


def get_emphasis(name: str) -> Emphasis:
    try:
        return EMPHASES[name]
    except KeyError:
        raise UserInputError("emphasis", f"unknown mode {name!r}; allowed: {', '.join(EMPHASES)}") from None


# --------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conditioning:
    """One encoded prompt: ``embeds`` ``(1, chunks * chunk_length, hidden)``, SDXL ``pooled`` ``(1, dim)``."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    chunk_length: int = DEFAULT_MAX_LENGTH
    embeddings_used: tuple[str, ...] = ()

    @property
    def chunks(self) -> int:
        return self.embeds.shape[1] // self.chunk_length


@dataclass(frozen=True)
class ScheduledPrompt:
    """One ``AND`` sub-prompt: its weight and ``(end_step, Conditioning)`` segments (see ``parse_prompt_schedules``)."""

    weight: float
    segments: tuple[tuple[int, Conditioning], ...]

    def at(self, step: int) -> Conditioning:
        """The conditioning in force at 0-based sampler step ``step``."""
        for end_step, conditioning in self.segments:
            if step < end_step:
                return conditioning
        return self.segments[-1][1]

    def index_at(self, step: int) -> int:
        for index, (end_step, _) in enumerate(self.segments):
            if step < end_step:
                return index
        return len(self.segments) - 1


@dataclass(frozen=True)
class ScheduledConditioning:
    """A prompt's conditioning over the sampling steps, one :class:`ScheduledPrompt` per ``AND`` sub-prompt.

    Every distinct segment text was encoded once; all tensors share one sequence length.
    """

    parts: tuple[ScheduledPrompt, ...]
    steps: int

    def at(self, step: int) -> torch.Tensor:
        """``(n_parts, seq, hidden)`` at 0-based ``step``; for a prompt without ``AND`` that is ``(1, seq, hidden)``,
        ready to pass as ``prompt_embeds``."""
        if len(self.parts) == 1:
            return self.parts[0].at(step).embeds
        return torch.cat([part.at(step).embeds for part in self.parts], dim=0)

    def pooled_at(self, step: int) -> torch.Tensor | None:
        pooled = [part.at(step).pooled for part in self.parts]
        if len(pooled) == 1:
            return pooled[0]
        if any(p is None for p in pooled):
            return None
        return torch.cat([p for p in pooled if p is not None], dim=0)

    @property
    def weights(self) -> list[float]:
        return [part.weight for part in self.parts]

    @property
    def is_composable(self) -> bool:
        """True when the sampler must combine several sub-prompts (or a single re-weighted one)."""
        return len(self.parts) > 1 or self.parts[0].weight != 1.0

    @property
    def is_static(self) -> bool:
        return all(len(part.segments) == 1 for part in self.parts)

    def change_steps(self) -> list[int]:
        """0-based steps at which :meth:`at` returns something different from the step before."""
        changes = []
        for step in range(1, self.steps):
            if any(part.index_at(step) != part.index_at(step - 1) for part in self.parts):
                changes.append(step)
        return changes

    @property
    def embeddings_used(self) -> tuple[str, ...]:
        names: dict[str, None] = {}
        for part in self.parts:
            for _, conditioning in part.segments:
                names.update(dict.fromkeys(conditioning.embeddings_used))
        return tuple(names)


# --------------------------------------------------------------------------------------------------------------
# The encoder
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextEncoderSlot:
    """A tokenizer with its text encoder. ``penultimate``: SDXL layer convention (see the module docstring)."""

    tokenizer: Any
    text_encoder: Any
    penultimate: bool = False


@dataclass(frozen=True)
class _Embedding:
    name: str
    vectors: tuple[torch.Tensor, ...]  # one (n, hidden) tensor per slot

    @property
    def length(self) -> int:
        return self.vectors[0].shape[0]


@dataclass
class _Chunk:
    ids: list[int]
    weights: list[float]
    fixes: list[tuple[int, torch.Tensor]]  # (offset among the chunk's tokens, vectors)


class PromptEncoder:
    """Encodes prompts for one pipeline's text encoders (see the module docstring for the semantics)."""

    def __init__(
        self,
        slots: Sequence[TextEncoderSlot],
        *,
        device: torch.device | str | None = None,
        embeddings: Mapping[str, EmbeddingVectors] | None = None,
        comma_backtrack: int = DEFAULT_COMMA_BACKTRACK,
    ) -> None:
        if not slots:
            raise ValueError("PromptEncoder needs at least one tokenizer/text encoder pair")
        self.slots = tuple(slots)
        self.device = torch.device(device) if device is not None else self.slots[0].text_encoder.device
        self.comma_backtrack = comma_backtrack
        self.skipped_embeddings: list[str] = []
        self._embeddings: dict[str, _Embedding] = {}
        for name, value in (embeddings or {}).items():
            prepared = self._prepare_embedding(name, value)
            if prepared is None:
                self.skipped_embeddings.append(name)
            else:
                self._embeddings[name.lower()] = prepared
        self._embedding_re = None
        if self._embeddings:
            names = sorted(self._embeddings, key=len, reverse=True)
            alternatives = "|".join(re.escape(name) for name in names)
            self._embedding_re = re.compile(rf"(?<![\w])({alternatives})(?![\w])", re.IGNORECASE)

    @classmethod
    def from_pipeline(
        cls,
        pipe: Any,
        *,
        embeddings: Mapping[str, EmbeddingVectors] | None = None,
        comma_backtrack: int = DEFAULT_COMMA_BACKTRACK,
        device: torch.device | str | None = None,
    ) -> PromptEncoder:
        """Use ``tokenizer``/``text_encoder`` and ``tokenizer_2``/``text_encoder_2`` where the pipeline has them.

        A second encoder means the SDXL layer convention (SDXL base, and the refiner that has only the second).
        ``device``: the pipeline's execution device where the caller knows it already (diffusers' property walks
        every module of every component to find offload hooks); looked up here otherwise.
        """
        sdxl = getattr(pipe, "text_encoder_2", None) is not None
        slots = []
        for tokenizer_name, encoder_name in (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")):
            tokenizer = getattr(pipe, tokenizer_name, None)
            encoder = getattr(pipe, encoder_name, None)
            if tokenizer is not None and encoder is not None:
                slots.append(TextEncoderSlot(tokenizer, encoder, penultimate=sdxl))
        if device is None:
            device = getattr(pipe, "_execution_device", None)
        return cls(slots, device=device, embeddings=embeddings, comma_backtrack=comma_backtrack)

    # ---- public API ------------------------------------------------------------------------------------------

    @property
    def chunk_length(self) -> int:
        """Positions per chunk including BOS and EOS (77 for CLIP)."""
        return _max_length(self.slots[0].tokenizer)

    def embedding_names(self) -> list[str]:
        return [embedding.name for embedding in self._embeddings.values()]

    @torch.no_grad()
    def encode(self, prompt: str, *, clip_skip: int = 1, emphasis: str = "Original") -> Conditioning:
        """Encode one prompt with weights and ``BREAK`` (no prompt editing or ``AND``: see :meth:`encode_schedules`)."""
        mode = get_emphasis(emphasis)
        segments = parse_attention(prompt) if mode.parses_brackets else split_breaks(prompt)
        if not mode.uses_weights:
            segments = [(text, weight if weight == BREAK_WEIGHT else 1.0) for text, weight in segments]

        used: dict[str, None] = {}
        per_slot = [self._chunks(index, segments, used) for index in range(len(self.slots))]
        count = max(len(chunks) for chunks in per_slot)
        for chunks in per_slot:
            chunks.extend(_Chunk([], [], []) for _ in range(count - len(chunks)))

        hidden: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        for index, chunks in enumerate(per_slot):
            z, slot_pooled = self._run_encoder(index, chunks, clip_skip)
            z = self._apply_emphasis(z, chunks, mode, _max_length(self.slots[index].tokenizer))
            hidden.append(z)
            if pooled is None and slot_pooled is not None:
                pooled = slot_pooled[:1]
        z = hidden[0] if len(hidden) == 1 else torch.cat(hidden, dim=-1)
        embeds = z.reshape(1, z.shape[0] * z.shape[1], z.shape[2])
        return Conditioning(embeds, pooled, self.chunk_length, tuple(used))

    def pad_to(self, conditionings: Sequence[Conditioning], *, clip_skip: int = 1) -> list[Conditioning]:
        """Append empty-prompt chunks so every conditioning has as many chunks as the longest (A1111's padding)."""
        longest = max(c.chunks for c in conditionings)
        if all(c.chunks == longest for c in conditionings):
            return list(conditionings)
        empty = self.encode("", clip_skip=clip_skip, emphasis="None").embeds
        padded = []
        for conditioning in conditionings:
            missing = longest - conditioning.chunks
            if missing:
                embeds = torch.cat([conditioning.embeds, *([empty] * missing)], dim=1)
                conditioning = Conditioning(
                    embeds, conditioning.pooled, conditioning.chunk_length, conditioning.embeddings_used
                )
            padded.append(conditioning)
        return padded

    def encode_pair(
        self, prompt: str, negative_prompt: str, *, clip_skip: int = 1, emphasis: str = "Original"
    ) -> tuple[Conditioning, Conditioning]:
        """Prompt and negative prompt, padded to the same length (no prompt editing or ``AND``)."""
        cond = self.encode(prompt, clip_skip=clip_skip, emphasis=emphasis)
        uncond = self.encode(negative_prompt, clip_skip=clip_skip, emphasis=emphasis)
        cond, uncond = self.pad_to([cond, uncond], clip_skip=clip_skip)
        return cond, uncond

    def encode_schedules(
        self, prompt: str, steps: int, *, clip_skip: int = 1, emphasis: str = "Original", composable: bool = True
    ) -> ScheduledConditioning:
        """Prompt editing, alternation and (with ``composable``) ``AND`` over ``steps`` sampling steps."""
        return self._encode_scheduled([(prompt, composable)], steps, clip_skip, emphasis)[0]

    def encode_schedules_pair(
        self, prompt: str, negative_prompt: str, steps: int, *, clip_skip: int = 1, emphasis: str = "Original"
    ) -> tuple[ScheduledConditioning, ScheduledConditioning]:
        """The job's positive (with ``AND``) and negative (without, as A1111) prompts, padded to one length."""
        cond, uncond = self._encode_scheduled([(prompt, True), (negative_prompt, False)], steps, clip_skip, emphasis)
        return cond, uncond

    # ---- scheduling ------------------------------------------------------------------------------------------

    def _encode_scheduled(
        self, prompts: Sequence[tuple[str, bool]], steps: int, clip_skip: int, emphasis: str
    ) -> list[ScheduledConditioning]:
        steps = max(1, int(steps))
        plans: list[list[tuple[float, list[tuple[int, str]]]]] = []
        for prompt, composable in prompts:
            parts = split_composable(prompt) if composable else [(prompt, 1.0)]
            plans.append([(weight, parse_prompt_schedules(text, steps)) for text, weight in parts])

        cache: dict[str, Conditioning] = {}
        for plan in plans:
            for _, schedule in plan:
                for _, text in schedule:
                    if text not in cache:
                        cache[text] = self.encode(text, clip_skip=clip_skip, emphasis=emphasis)
        texts = list(cache)
        cache = dict(zip(texts, self.pad_to([cache[text] for text in texts], clip_skip=clip_skip), strict=True))

        results = []
        for plan in plans:
            scheduled = tuple(
                ScheduledPrompt(weight, tuple((end, cache[text]) for end, text in schedule))
                for weight, schedule in plan
            )
            results.append(ScheduledConditioning(scheduled, steps))
        return results

    # ---- tokenization ----------------------------------------------------------------------------------------

    def _prepare_embedding(self, name: str, value: EmbeddingVectors) -> _Embedding | None:
        candidates = [value] * len(self.slots) if isinstance(value, torch.Tensor) else list(value)
        if len(candidates) != len(self.slots):
            log.warning(
                "embedding %r has %d tensors for %d text encoders; skipped", name, len(candidates), len(self.slots)
            )
            return None
        vectors = []
        for slot, tensor in zip(self.slots, candidates, strict=True):
            tensor = tensor.detach()
            if tensor.ndim == 1:
                tensor = tensor.unsqueeze(0)
            width = slot.text_encoder.get_input_embeddings().embedding_dim
            limit = _max_length(slot.tokenizer) - 2
            if tensor.ndim != 2 or tensor.shape[1] != width or not 0 < tensor.shape[0] <= limit:
                log.warning(
                    "embedding %r has shape %s, the text encoder needs (1..%d, %d); skipped",
                    name,
                    tuple(tensor.shape),
                    limit,
                    width,
                )
                return None
            vectors.append(tensor)
        if len({v.shape[0] for v in vectors}) != 1:
            log.warning("embedding %r has different vector counts per text encoder; skipped", name)
            return None
        return _Embedding(name, tuple(vectors))

    def _split_embeddings(self, text: str) -> Iterator[str | _Embedding]:
        if self._embedding_re is None:
            yield text
            return
        position = 0
        for match in self._embedding_re.finditer(text):
            if match.start() > position:
                yield text[position : match.start()]
            yield self._embeddings[match.group(1).lower()]
            position = match.end()
        if position < len(text) or position == 0:
            yield text[position:]

    def _chunks(self, slot_index: int, segments: Sequence[tuple[str, float]], used: dict[str, None]) -> list[_Chunk]:
        """Cut weighted segments into chunks of at most ``model_max_length - 2`` tokens (without BOS/EOS)."""
        tokenizer = self.slots[slot_index].tokenizer
        capacity = _max_length(tokenizer) - 2
        comma = _comma_id(tokenizer)
        chunks: list[_Chunk] = []
        current = _Chunk([], [], [])
        last_comma = -1

        def close() -> None:
            nonlocal current, last_comma
            chunks.append(current)
            current = _Chunk([], [], [])
            last_comma = -1

        def make_room(needed: int) -> None:
            """Start a new chunk when ``needed`` more tokens do not fit, carrying words after a near comma."""
            nonlocal current, last_comma
            if len(current.ids) + needed <= capacity:
                return
            split = len(current.ids)
            if self.comma_backtrack > 0 and last_comma >= 0 and len(current.ids) - last_comma <= self.comma_backtrack:
                split = last_comma + 1
            for offset, vectors in current.fixes:  # never cut an embedding in two
                if offset < split < offset + vectors.shape[0]:
                    split = offset
            carried = _Chunk(
                current.ids[split:],
                current.weights[split:],
                [(offset - split, vectors) for offset, vectors in current.fixes if offset >= split],
            )
            current.ids, current.weights = current.ids[:split], current.weights[:split]
            current.fixes = [(offset, vectors) for offset, vectors in current.fixes if offset < split]
            close()
            current = carried
            last_comma = max((i for i, token in enumerate(carried.ids) if token == comma), default=-1)

        for text, weight in segments:
            if weight == BREAK_WEIGHT:
                close()
                continue
            for piece in self._split_embeddings(text):
                if isinstance(piece, _Embedding):
                    used[piece.name] = None
                    vectors = piece.vectors[slot_index]
                    make_room(vectors.shape[0])
                    current.fixes.append((len(current.ids), vectors))
                    current.ids.extend([_placeholder_id(tokenizer)] * vectors.shape[0])
                    current.weights.extend([weight] * vectors.shape[0])
                    continue
                for token in tokenizer(piece, add_special_tokens=False, truncation=False).input_ids:
                    make_room(1)
                    if token == comma:
                        last_comma = len(current.ids)
                    current.ids.append(token)
                    current.weights.append(weight)
        if current.ids or not chunks:
            close()
        return chunks

    # ---- encoding --------------------------------------------------------------------------------------------

    def _run_encoder(
        self, slot_index: int, chunks: Sequence[_Chunk], clip_skip: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        slot = self.slots[slot_index]
        tokenizer, encoder = slot.tokenizer, slot.text_encoder
        length = _max_length(tokenizer)
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
        rows, masks = [], []
        for chunk in chunks:
            body = [bos, *chunk.ids, eos]
            rows.append(body + [pad] * (length - len(body)))
            masks.append([1] * len(body) + [0] * (length - len(body)))
        input_ids = torch.tensor(rows, dtype=torch.long, device=self.device)
        layers = encoder.config.num_hidden_layers
        clip_skip = min(max(1, int(clip_skip)), layers)

        with self._spliced_embeddings(encoder, chunks):
            if slot.penultimate:
                # diffusers' SDXL call: no attention mask, penultimate layer, pooled from the projection model.
                output = encoder(input_ids, output_hidden_states=True)
                z = output.hidden_states[-(clip_skip + 1)]
                pooled = output[0] if output[0].ndim == 2 else None
            else:
                mask = None
                if getattr(encoder.config, "use_attention_mask", False):
                    mask = torch.tensor(masks, dtype=torch.long, device=self.device)
                pooled = None
                if clip_skip == 1:
                    z = encoder(input_ids, attention_mask=mask)[0]
                else:
                    output = encoder(input_ids, attention_mask=mask, output_hidden_states=True)
                    z = _final_layer_norm(encoder)(output.hidden_states[-clip_skip])
        z = z.to(dtype=encoder.dtype, device=self.device)
        if pooled is not None:
            pooled = pooled.to(dtype=encoder.dtype, device=self.device)
        return z, pooled

    @staticmethod
    @contextmanager
    def _spliced_embeddings(encoder: Any, chunks: Sequence[_Chunk]) -> Iterator[None]:
        """Overwrite placeholder positions of the token embeddings with TI vectors, for this forward pass only."""
        fixes = [(row, offset, vectors) for row, chunk in enumerate(chunks) for offset, vectors in chunk.fixes]
        if not fixes:
            yield
            return

        def splice(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
            output = output.clone()
            for row, offset, vectors in fixes:
                start = offset + 1  # after BOS
                output[row, start : start + vectors.shape[0]] = vectors.to(output.device, output.dtype)
            return output

        handle = encoder.get_input_embeddings().register_forward_hook(splice)
        try:
            yield
        finally:
            handle.remove()

    @staticmethod
    def _apply_emphasis(z: torch.Tensor, chunks: Sequence[_Chunk], mode: Emphasis, length: int) -> torch.Tensor:
        if not mode.uses_weights or all(w == 1.0 for chunk in chunks for w in chunk.weights):
            return z
        rows = []
        for row, chunk in enumerate(chunks):
            if all(w == 1.0 for w in chunk.weights):
                rows.append(z[row])
                continue
            weights = [1.0, *chunk.weights]
            weights += [1.0] * (length - len(weights))
            multipliers = torch.tensor(weights, dtype=torch.float32, device=z.device)
            rows.append(mode.apply(z[row], multipliers))
        return torch.stack(rows)


def _comma_id(tokenizer: Any) -> int | None:
    """The id of ``,</w>`` in ``tokenizer``'s vocabulary, or None where it has none. A single-token lookup:
    ``get_vocab()`` builds a dict of CLIP's 49 408 tokens (tens of milliseconds), which cost every prompt that."""
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    if not isinstance(comma, int) or (comma == getattr(tokenizer, "unk_token_id", None)
                                      and getattr(tokenizer, "unk_token", None) != ",</w>"):
        return None
    return comma


def _max_length(tokenizer: Any) -> int:
    length = getattr(tokenizer, "model_max_length", None)
    if not isinstance(length, int) or length > 100_000:
        return DEFAULT_MAX_LENGTH
    return length


def _final_layer_norm(encoder: Any) -> torch.nn.Module:
    """transformers 5 flattened ``CLIPTextModel`` (no ``text_model``); the projection model still nests it."""
    norm = getattr(encoder, "final_layer_norm", None)
    return norm if norm is not None else encoder.text_model.final_layer_norm


def _placeholder_id(tokenizer: Any) -> int:
    """An id for TI positions that is not EOS: pooling looks for EOS, the vectors are spliced in anyway."""
    special = {tokenizer.eos_token_id, tokenizer.bos_token_id}
    return next(i for i in range(len(special) + 1) if i not in special)


# --------------------------------------------------------------------------------------------------------------
# What the sampler does with it
# --------------------------------------------------------------------------------------------------------------


class ScheduleCallback:
    """``callback_on_step_end`` for diffusers pipelines that swaps in the scheduled embeddings for the next step.

    Pass ``callback_on_step_end_tensor_inputs=callback.tensor_inputs``. The pipeline's initial embeddings must
    be ``cond.at(0)`` / ``uncond.at(0)``. Works for prompts without ``AND`` (one part); every batch row uses the
    same prompt. SDXL pooled embeddings are swapped through ``add_text_embeds`` when they change.
    """

    def __init__(
        self, cond: ScheduledConditioning, uncond: ScheduledConditioning | None = None, *, pooled: bool = False
    ) -> None:
        if len(cond.parts) != 1 or (uncond is not None and len(uncond.parts) != 1):
            raise ValueError("ScheduleCallback handles one sub-prompt; AND needs the composable sampler")
        self.cond = cond
        self.uncond = uncond
        self.pooled = pooled
        self.tensor_inputs = ["prompt_embeds", *(["add_text_embeds"] if pooled else [])]
        changes = set(cond.change_steps())
        if uncond is not None:
            changes.update(uncond.change_steps())
        self._changes = changes

    def _rows(self, current: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor | None) -> torch.Tensor:
        batch = current.shape[0]
        if uncond is not None and batch % 2 == 0 and batch >= 2:
            half = batch // 2
            repeats = (1,) * (cond.ndim - 1)
            new = torch.cat([uncond.repeat(half, *repeats), cond.repeat(half, *repeats)])
        else:
            new = cond.repeat(batch, *((1,) * (cond.ndim - 1)))
        return new.to(device=current.device, dtype=current.dtype)

    def __call__(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        upcoming = step + 1
        if upcoming not in self._changes:
            return {}
        guidance = self.uncond is not None and bool(getattr(pipe, "do_classifier_free_guidance", True))
        uncond = self.uncond if guidance else None
        out: dict[str, Any] = {}
        current = callback_kwargs.get("prompt_embeds")
        if current is not None:
            out["prompt_embeds"] = self._rows(
                current, self.cond.at(upcoming), uncond.at(upcoming) if uncond is not None else None
            )
        current_pooled = callback_kwargs.get("add_text_embeds")
        pooled = self.cond.pooled_at(upcoming)
        if self.pooled and current_pooled is not None and pooled is not None:
            uncond_pooled = uncond.pooled_at(upcoming) if uncond is not None else None
            out["add_text_embeds"] = self._rows(current_pooled, pooled, uncond_pooled)
        return out


def combine_composable(
    uncond_out: torch.Tensor, cond_outs: Sequence[torch.Tensor], weights: Sequence[float], cfg_scale: float
) -> torch.Tensor:
    """Composable diffusion's guidance: ``uncond + cfg * Σ w_i (cond_i - uncond)``.

    diffusers pipelines cannot do this themselves; the sampler evaluates the model on the batch
    ``[uncond, cond_1, …, cond_n]`` (``ScheduledConditioning.at(step)`` gives the conds stacked) and combines the
    predictions here. With one sub-prompt of weight 1 this is ordinary classifier-free guidance.
    """
    if len(cond_outs) != len(weights):
        raise ValueError(f"{len(cond_outs)} predictions for {len(weights)} weights")
    delta = torch.zeros_like(uncond_out)
    for prediction, weight in zip(cond_outs, weights, strict=True):
        delta = delta + weight * (prediction - uncond_out)
    return uncond_out + cfg_scale * delta
