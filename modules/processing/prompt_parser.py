"""The A1111 prompt language, parsed without torch.

Users paste prompts between A1111, SD.Next and Easel, so the syntax and its meaning follow A1111's documented
behaviour (see ``docs/A1111-CONTRACT.md``). The implementation is Easel's own: a small bracket matcher plus
recursive descent, which never raises on malformed input (an unbalanced bracket is plain text, as a user would expect).

Order in which processing applies these steps to a prompt:

1. :meth:`modules.processing.styles.StyleStore.apply_styles` (styles.csv),
2. :func:`modules.processing.wildcards.expand_wildcards` (``__name__``),
3. :func:`extract_extra_networks` (``<lora:name:1>`` tags leave the text; their colons would otherwise
   look like prompt editing),
4. :func:`split_composable` (``AND`` sub-prompts with weights; the negative prompt is not split),
5. :func:`parse_prompt_schedules` per sub-prompt (``[from:to:when]``, ``[a|b]``),
6. :func:`parse_attention` per scheduled text (weights, ``BREAK``), done by
   :class:`modules.processing.conditioning.PromptEncoder`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from modules.core.errors import UserInputError

log = logging.getLogger(__name__)

BREAK = "BREAK"
"""Text of the chunk-break marker segment returned by :func:`parse_attention`."""
BREAK_WEIGHT = -1.0
"""Weight of the chunk-break marker segment; no real weight is ever negative-one from the parser's ``[``/``(``."""

ATTENTION_UP = 1.1
ATTENTION_DOWN = 1 / 1.1

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_WHEN_RE = re.compile(rf"\s*({_NUMBER})\s*")


# --------------------------------------------------------------------------------------------------------------
# Prompt editing and alternation
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Text:
    text: str


@dataclass
class _Group:
    """A bracketed span that is not editing syntax: kept with its brackets for the attention parser."""

    opening: str
    closing: str
    body: list[_Node]


@dataclass
class _Scheduled:
    before: list[_Node]
    after: list[_Node]
    when: float


@dataclass
class _Alternate:
    options: list[list[_Node]]


_Node = _Text | _Group | _Scheduled | _Alternate

_PAIRS = {")": "(", "]": "["}


def _match_brackets(text: str) -> dict[int, int]:
    """Map each opening ``(``/``[`` index to its closing index; escaped and unbalanced brackets stay unpaired.

    A closer whose opener lies deeper in the stack closes it and leaves the openers above it unpaired, so
    ``(a [b)`` pairs the parentheses and keeps ``[`` as text.
    """
    pairs: dict[int, int] = {}
    stack: list[tuple[str, int]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "([":
            stack.append((ch, i))
        elif ch in _PAIRS:
            want = _PAIRS[ch]
            for depth in range(len(stack) - 1, -1, -1):
                if stack[depth][0] == want:
                    pairs[stack[depth][1]] = i
                    del stack[depth:]
                    break
        i += 1
    return pairs


class _ScheduleParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pairs = _match_brackets(text)

    def parse(self, start: int, end: int) -> list[_Node]:
        nodes: list[_Node] = []
        buf: list[str] = []

        def flush() -> None:
            if buf:
                nodes.append(_Text("".join(buf)))
                buf.clear()

        i = start
        while i < end:
            ch = self.text[i]
            if ch == "\\" and i + 1 < end:
                buf.append(self.text[i : i + 2])
                i += 2
                continue
            close = self.pairs.get(i)
            if close is not None and close < end:
                flush()
                if ch == "(":
                    nodes.append(_Group("(", ")", self.parse(i + 1, close)))
                else:
                    nodes.append(self._square(i + 1, close))
                i = close + 1
                continue
            buf.append(ch)
            i += 1
        flush()
        return nodes

    def _top_level_separators(self, start: int, end: int) -> list[int]:
        seps: list[int] = []
        i = start
        while i < end:
            ch = self.text[i]
            if ch == "\\":
                i += 2
                continue
            close = self.pairs.get(i)
            if close is not None:
                i = close + 1
                continue
            if ch in ":|":
                seps.append(i)
            i += 1
        return seps

    def _square(self, start: int, end: int) -> _Node:
        seps = self._top_level_separators(start, end)
        kinds = {self.text[s] for s in seps}
        bounds = [start - 1, *seps, end]
        ranges = [(bounds[k] + 1, bounds[k + 1]) for k in range(len(bounds) - 1)]
        if kinds == {"|"}:
            return _Alternate([self.parse(a, b) for a, b in ranges])
        if kinds == {":"} and len(ranges) in (2, 3):
            when = _WHEN_RE.fullmatch(self.text[ranges[-1][0] : ranges[-1][1]])
            if when is not None:
                before = self.parse(*ranges[0]) if len(ranges) == 3 else []
                after = self.parse(*ranges[-2])
                return _Scheduled(before, after, float(when.group(1)))
        return _Group("[", "]", self.parse(start, end))


def _when_to_step(when: float, steps: int) -> int:
    """A1111's rule: below 1 is a fraction of the steps, otherwise a step number; capped at ``steps``."""
    value = when * steps if when < 1 else when
    return min(steps, int(value))


def _collect_steps(nodes: Sequence[_Node], steps: int, out: set[int]) -> None:
    for node in nodes:
        if isinstance(node, _Group):
            _collect_steps(node.body, steps, out)
        elif isinstance(node, _Scheduled):
            boundary = _when_to_step(node.when, steps)
            if boundary >= 1:
                out.add(boundary)
            _collect_steps(node.before, steps, out)
            _collect_steps(node.after, steps, out)
        elif isinstance(node, _Alternate):
            out.update(range(1, steps + 1))
            for option in node.options:
                _collect_steps(option, steps, out)


def _render(nodes: Sequence[_Node], step: int, steps: int) -> str:
    """The prompt text in force during 1-based ``step``."""
    parts: list[str] = []
    for node in nodes:
        if isinstance(node, _Text):
            parts.append(node.text)
        elif isinstance(node, _Group):
            parts.append(node.opening + _render(node.body, step, steps) + node.closing)
        elif isinstance(node, _Scheduled):
            chosen = node.before if step <= _when_to_step(node.when, steps) else node.after
            parts.append(_render(chosen, step, steps))
        else:
            parts.append(_render(node.options[(step - 1) % len(node.options)], step, steps))
    return "".join(parts)


def parse_prompt_schedules(prompt: str, steps: int) -> list[tuple[int, str]]:
    """Resolve prompt editing and alternation into ``(end_step, text)`` segments covering ``steps`` steps.

    Segment *k* is in force for the 1-based steps ``end_step[k-1] + 1 .. end_step[k]``; equivalently, for a
    0-based sampler step index ``i`` it is the first segment with ``i < end_step``. So ``[cat:dog:0.5]`` over
    20 steps gives ``[(10, "cat"), (20, "dog")]``: 10 steps of cat, then dog. ``[to:when]`` adds text after
    ``when`` steps, ``[from::when]`` removes it, ``[a|b|c]`` cycles every step. Escapes and the attention
    syntax are kept in the returned texts for :func:`parse_attention`. Consecutive equal texts are merged.
    """
    steps = max(1, int(steps))
    if "[" not in prompt:
        return [(steps, prompt)]
    nodes = _ScheduleParser(prompt).parse(0, len(prompt))
    boundaries = {steps}
    _collect_steps(nodes, steps, boundaries)
    segments: list[tuple[int, str]] = []
    for boundary in sorted(boundaries):
        text = _render(nodes, boundary, steps)
        if segments and segments[-1][1] == text:
            segments[-1] = (boundary, text)
        else:
            segments.append((boundary, text))
    return segments


def prompt_at_step(schedule: Sequence[tuple[int, str]], step_index: int) -> str:
    """The text of ``schedule`` in force at 0-based sampler step ``step_index`` (the last one past the end)."""
    for end_step, text in schedule:
        if step_index < end_step:
            return text
    return schedule[-1][1]


# --------------------------------------------------------------------------------------------------------------
# Composable diffusion (AND)
# --------------------------------------------------------------------------------------------------------------

_AND_RE = re.compile(r"\bAND\b")
_TRAILING_WEIGHT_RE = re.compile(rf"\s*:\s*({_NUMBER})\s*$")


def split_composable(prompt: str) -> list[tuple[str, float]]:
    """Split ``a cat :1.2 AND a dog :0.5`` into ``[("a cat", 1.2), ("a dog", 0.5)]`` (default weight 1).

    ``AND`` must be upper case and a whole word. A prompt without ``AND`` or trailing weight is returned
    unchanged, so plain prompts reach the encoder byte for byte.
    """
    parts: list[tuple[str, float]] = []
    for piece in _AND_RE.split(prompt):
        match = _TRAILING_WEIGHT_RE.search(piece)
        if match is None:
            parts.append((piece, 1.0))
        else:
            parts.append((piece[: match.start()], float(match.group(1))))
    if len(parts) > 1:
        parts = [(text.strip(), weight) for text, weight in parts]
    return parts


# --------------------------------------------------------------------------------------------------------------
# Attention weights and BREAK
# --------------------------------------------------------------------------------------------------------------

_ATTENTION_TOKEN_RE = re.compile(
    rf"""
    (?P<escaped>\\[\\()\[\]:|])
    | (?P<weighted_close>:\s*(?P<weight>{_NUMBER})\s*\))
    | (?P<bracket>[()\[\]])
    | (?P<plain>[^\\()\[\]:]+|[\\:])
    """,
    re.VERBOSE,
)
_BREAK_RE = re.compile(r"\s*\bBREAK\b\s*")


def parse_attention(text: str) -> list[tuple[str, float]]:
    """Split ``text`` into ``(text, weight)`` runs following A1111's emphasis rules.

    ``(a)`` multiplies by 1.1 (nested: ``((a))`` 1.21), ``[a]`` divides by 1.1, ``(a:1.3)`` multiplies by 1.3;
    ``\\(`` ``\\)`` ``\\[`` ``\\]`` ``\\:`` ``\\\\`` are literal characters. An unmatched closer is text and an
    unclosed opener applies to the rest of the prompt. ``BREAK`` (upper case, a whole word) becomes its own
    ``(BREAK, BREAK_WEIGHT)`` marker. Adjacent runs with equal weights are merged; the result is never empty.
    """
    runs: list[list[str | float]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def scale(start: int, factor: float) -> None:
        for run in runs[start:]:
            if run[1] != BREAK_WEIGHT:
                run[1] = float(run[1]) * factor

    def add_text(chunk: str) -> None:
        for index, piece in enumerate(_BREAK_RE.split(chunk)):
            if index:
                runs.append([BREAK, BREAK_WEIGHT])
            if piece:
                runs.append([piece, 1.0])

    for match in _ATTENTION_TOKEN_RE.finditer(text):
        token = match.group(0)
        if match.group("escaped"):
            runs.append([token[1], 1.0])
        elif match.group("weighted_close") and round_open:
            scale(round_open.pop(), float(match.group("weight")))
        elif token == "(":
            round_open.append(len(runs))
        elif token == "[":
            square_open.append(len(runs))
        elif token == ")" and round_open:
            scale(round_open.pop(), ATTENTION_UP)
        elif token == "]" and square_open:
            scale(square_open.pop(), ATTENTION_DOWN)
        else:
            add_text(token)

    for start in round_open:
        scale(start, ATTENTION_UP)
    for start in square_open:
        scale(start, ATTENTION_DOWN)

    merged: list[tuple[str, float]] = []
    for chunk, weight in runs:
        assert isinstance(chunk, str)
        weight = float(weight)
        if merged and weight != BREAK_WEIGHT and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + chunk, weight)
        else:
            merged.append((chunk, weight))
    return merged or [("", 1.0)]


def split_breaks(text: str) -> list[tuple[str, float]]:
    """Only the ``BREAK`` markers of :func:`parse_attention`, brackets left as text (emphasis mode "None")."""
    runs: list[tuple[str, float]] = []
    for index, piece in enumerate(_BREAK_RE.split(text)):
        if index:
            runs.append((BREAK, BREAK_WEIGHT))
        if piece:
            runs.append((piece, 1.0))
    return runs or [("", 1.0)]


# --------------------------------------------------------------------------------------------------------------
# Extra networks (<lora:name:1>)
# --------------------------------------------------------------------------------------------------------------

_EXTRA_NETWORK_RE = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class ExtraNetworkRef:
    """One ``<kind:name:args>`` tag from a prompt.

    ``positional`` holds the arguments after the name as written, ``named`` the ``key=value`` ones (A1111's
    ``te=``, ``unet=``, ``dyn=``). The multipliers follow the Lora extension: ``<lora:n:m>`` sets both,
    ``<lora:n:te:unet>`` sets them separately, a missing multiplier is 1.
    """

    kind: str
    name: str
    positional: tuple[str, ...] = ()
    named: Mapping[str, str] = field(default_factory=dict, hash=False)
    tag: str = ""

    def _number(self, key: str, index: int, default: float) -> float:
        raw = self.named.get(key)
        if raw is None and index < len(self.positional):
            raw = self.positional[index]
        if raw is None or raw.strip() == "":
            return default
        try:
            return float(raw)
        except ValueError:
            raise UserInputError("prompt", f"{self.tag}: {key} multiplier {raw!r} is not a number") from None

    @property
    def te_multiplier(self) -> float:
        return self._number("te", 0, 1.0)

    @property
    def unet_multiplier(self) -> float:
        return self._number("unet", 1, self.te_multiplier)

    @property
    def multiplier(self) -> float:
        """The single multiplier of ``<hypernet:name:m>`` (and the text-encoder one of a LoRA)."""
        return self.te_multiplier


def extract_extra_networks(prompt: str, kinds: Iterable[str] | None = None) -> tuple[str, list[ExtraNetworkRef]]:
    """Remove ``<kind:name[:args]>`` tags from ``prompt`` and return the remaining text and the tags in order.

    ``kinds`` limits which tags are taken (default: all, as A1111 does; an unknown kind is reported by the
    extra-network activation, not silently kept in the text where it would become tokens).
    """
    wanted = None if kinds is None else {kind.lower() for kind in kinds}
    refs: list[ExtraNetworkRef] = []

    def take(match: re.Match[str]) -> str:
        kind = match.group(1)
        if wanted is not None and kind.lower() not in wanted:
            return match.group(0)
        name, *args = match.group(2).split(":")
        positional = tuple(arg.strip() for arg in args if "=" not in arg)
        named = {}
        for arg in args:
            if "=" in arg:
                key, value = arg.split("=", 1)
                named[key.strip()] = value.strip()
        refs.append(ExtraNetworkRef(kind.lower(), name.strip(), positional, named, match.group(0)))
        return ""

    return _EXTRA_NETWORK_RE.sub(take, prompt), refs
