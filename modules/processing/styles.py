"""Prompt styles: ``styles.csv`` in A1111's format (``name,prompt,negative_prompt``), applied to a prompt through
its ``{prompt}`` placeholder or appended, and removed again when the prompt still shows them."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from modules.core.atomic import atomic_write_text
from modules.core.errors import UserInputError

log = logging.getLogger(__name__)

PROMPT_PLACEHOLDER = "{prompt}"
STYLE_COLUMNS = ("name", "prompt", "negative_prompt")


@dataclass(frozen=True)
class PromptStyle:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge_style_prompt(style_prompt: str, prompt: str) -> str:
    """A1111's rule: ``{prompt}`` in the style is replaced by the prompt, else the style is appended with ", "."""
    if PROMPT_PLACEHOLDER in style_prompt:
        return style_prompt.replace(PROMPT_PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def _unmerge_style_prompt(style_prompt: str, prompt: str) -> str | None:
    """The prompt before :func:`merge_style_prompt` applied ``style_prompt``, or None if it was not applied."""
    style_prompt = style_prompt.strip()
    prompt = prompt.strip()
    if not style_prompt:
        return prompt
    if PROMPT_PLACEHOLDER in style_prompt:
        head, _, tail = style_prompt.partition(PROMPT_PLACEHOLDER)
        fits = len(head) + len(tail) <= len(prompt) and PROMPT_PLACEHOLDER not in tail
        if fits and prompt.startswith(head) and prompt.endswith(tail):
            return prompt[len(head) : len(prompt) - len(tail)]
        return None
    if prompt == style_prompt:
        return ""
    suffix = ", " + style_prompt
    if prompt.endswith(suffix):
        return prompt[: -len(suffix)]
    return None


class StyleStore:
    """The styles of one ``styles.csv`` (columns ``name,prompt,negative_prompt``, A1111's file format).

    Reads accept A1111's older ``text`` column for the prompt and skip rows without a name. Saves are atomic
    so a crash never truncates a user's styles.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._styles: dict[str, PromptStyle] = {}
        self.warning: str | None = None  # what the last read had to work around, naming the file

    @classmethod
    def load(cls, path: Path) -> StyleStore:
        store = cls(path)
        store.reload()
        return store

    def reload(self) -> None:
        """Read the file. One that is not UTF-8 (a spreadsheet saved it in the Windows code page) is read as
        cp1252, else Latin-1, with a warning naming the file; one that is not CSV leaves no styles and a warning.
        Neither stops the warm-up or a generation."""
        styles: dict[str, PromptStyle] = {}
        self.warning = None
        if self.path.is_file():
            text = self._read_text()
            try:
                for row in csv.DictReader(io.StringIO(text)):
                    name = (row.get("name") or "").strip()
                    if not name:
                        continue
                    prompt = row.get("prompt")
                    if prompt is None:
                        prompt = row.get("text") or ""
                    styles[name] = PromptStyle(name, prompt, row.get("negative_prompt") or "")
            except csv.Error as exc:
                self.warning = f"{self.path}: not a valid styles CSV ({exc}); no styles loaded from it"
                log.warning(self.warning)
                styles = {}
        self._styles = styles

    def _read_text(self) -> str:
        data = self.path.read_bytes()
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            for encoding in ("cp1252", "latin-1"):
                try:
                    text = data.decode(encoding)
                except UnicodeDecodeError:
                    continue
                self.warning = (f"{self.path} is not UTF-8 (byte {exc.start}); read as {encoding}. Save it as UTF-8 "
                                "to silence this warning")
                log.warning(self.warning)
                return text
            raise AssertionError("latin-1 decodes any bytes") from exc

    def save(self) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(STYLE_COLUMNS)
        for style in self._styles.values():
            writer.writerow((style.name, style.prompt, style.negative_prompt))
        atomic_write_text(self.path, buffer.getvalue())

    def names(self) -> list[str]:
        return list(self._styles)

    def get(self, name: str) -> PromptStyle | None:
        return self._styles.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._styles

    def __iter__(self) -> Iterator[PromptStyle]:
        return iter(list(self._styles.values()))

    def __len__(self) -> int:
        return len(self._styles)

    def set(self, style: PromptStyle) -> None:
        """Add or replace a style (by name); call :meth:`save` to persist."""
        if not style.name.strip():
            raise UserInputError("name", "a style needs a non-empty name")
        self._styles[style.name] = style

    def delete(self, name: str) -> bool:
        return self._styles.pop(name, None) is not None

    def apply_styles(self, prompt: str, negative_prompt: str, names: Sequence[str]) -> tuple[str, str]:
        """Apply the named styles in order to both prompts; unknown names are logged and skipped (as A1111)."""
        for name in names:
            style = self._styles.get(name)
            if style is None:
                log.warning("style %r not found in %s", name, self.path)
                continue
            prompt = merge_style_prompt(style.prompt, prompt)
            negative_prompt = merge_style_prompt(style.negative_prompt, negative_prompt)
        return prompt, negative_prompt

    def extract_styles(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """Undo styles found in a pasted infotext: returns (style names in application order, prompt, negative).

        A style counts only when it can be removed from both the prompt and the negative prompt.
        """
        found: list[str] = []
        remaining = sorted(self._styles.values(), key=lambda s: len(s.prompt) + len(s.negative_prompt), reverse=True)
        progress = True
        while progress:
            progress = False
            for style in remaining:
                if not style.prompt.strip() and not style.negative_prompt.strip():
                    continue
                new_prompt = _unmerge_style_prompt(style.prompt, prompt)
                new_negative = _unmerge_style_prompt(style.negative_prompt, negative_prompt)
                if new_prompt is None or new_negative is None:
                    continue
                found.append(style.name)
                prompt, negative_prompt = new_prompt, new_negative
                remaining.remove(style)
                progress = True
                break
        return list(reversed(found)), prompt, negative_prompt


def apply_styles(store: StyleStore, prompt: str, negative_prompt: str, names: Sequence[str]) -> tuple[str, str]:
    """Function form of :meth:`StyleStore.apply_styles` for callers holding a store."""
    return store.apply_styles(prompt, negative_prompt, names)
