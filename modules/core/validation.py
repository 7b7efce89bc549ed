"""The one input-validation layer every request model shares.

:class:`StrictInput` is the base of every model a client fills (generation params, extras, png-info, ControlNet
detect, options, script arguments). Whatever the field's type, even ``object`` inside ``override_settings``,
``script_args`` or ``alwayson_scripts``, it refuses:

- non-finite numbers (``NaN``, ``Infinity``: Python's JSON parser accepts them, nothing downstream can use them);
- integers outside the signed 64-bit range (SQLite, torch and every JSON client stop there);
- strings (values and keys) holding lone UTF-16 surrogates (``"\\ud800"``), which cannot be encoded as UTF-8.

Each refusal is a pydantic error whose ``loc`` is the full path to the value (``script_args.3``,
``override_settings.eta_ddim``), so the API's 422 names it. Range errors of declared fields are reworded to
state the whole allowed range (``allowed: 1..1000``), not just the bound that was crossed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Annotated

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidatorFunctionWrapHandler, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_SEED = 2**32 - 1
"""A1111 draws random seeds below 2**32 and its infotexts hold seeds in that range."""
MAX_WALK_DEPTH = 64
"""Nesting deeper than this inside a free-form field is refused rather than walked."""

RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _walk(value: object, loc: tuple[int | str, ...], depth: int = 0
          ) -> Iterator[tuple[tuple[int | str, ...], str, object]]:
    """Yield ``(loc, message, value)`` for every unusable scalar inside ``value`` (JSON-shaped data)."""
    if depth > MAX_WALK_DEPTH:
        yield loc, f"nested deeper than {MAX_WALK_DEPTH} levels", None
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            yield loc, "must be a finite number (NaN and Infinity are not allowed)", value
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            yield loc, f"integer out of range; allowed: {INT64_MIN}..{INT64_MAX}", value
    elif isinstance(value, str):
        if _has_lone_surrogate(value):
            yield loc, "text holds a lone UTF-16 surrogate (not valid Unicode)", None
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and _has_lone_surrogate(key):
                yield loc, "a key holds a lone UTF-16 surrogate (not valid Unicode)", None
                continue
            yield from _walk(item, (*loc, key if isinstance(key, int | str) else str(key)), depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, (*loc, index), depth + 1)


def _has_lone_surrogate(text: str) -> bool:
    if text.isascii():  # O(1) in CPython: base64 images, the usual long strings, stop here
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unusable_values(data: object) -> list[tuple[tuple[int | str, ...], str, object]]:
    """Every non-finite number, out-of-range integer and unencodable string in ``data``, with its location."""
    return list(_walk(data, ()))


def _bounds(metadata: list[object]) -> tuple[str | None, str | None]:
    low = high = None
    for item in metadata:
        if isinstance(item, Ge):
            low = f"{item.ge}"
        elif isinstance(item, Gt):
            low = f">{item.gt}"
        elif isinstance(item, Le):
            high = f"{item.le}"
        elif isinstance(item, Lt):
            high = f"<{item.lt}"
    return low, high


def range_text(metadata: list[object]) -> str | None:
    """``"1..1000"`` for a field declared with ``ge=1, le=1000`` (None when it declares no bound)."""
    low, high = _bounds(metadata)
    if low is None and high is None:
        return None
    return f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"


def _reworded(cls: type[BaseModel], error: ErrorDetails) -> InitErrorDetails:
    loc = tuple(error.get("loc", ()))
    message = str(error.get("msg", "invalid value"))
    if error.get("type") in RANGE_ERRORS and len(loc) == 1 and loc[0] in cls.model_fields:
        allowed = range_text(cls.model_fields[str(loc[0])].metadata)
        if allowed:
            extra = getattr(cls.model_fields[str(loc[0])], "json_schema_extra", None)
            note = extra.get("allowed") if isinstance(extra, dict) else None
            message = f"{error.get('input')!r} is out of range; allowed: {note or allowed}"
    return InitErrorDetails(type=PydanticCustomError(str(error.get("type", "value_error")), message.replace("{", "(")
                                                     .replace("}", ")")),
                            loc=loc, input=error.get("input"))


class StrictInput(BaseModel):
    """Base of every client-filled model: finite numbers, 64-bit integers, valid Unicode, full-range messages."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="wrap")
    @classmethod
    def _refuse_unusable(cls, data: object, handler: ValidatorFunctionWrapHandler) -> StrictInput:
        if isinstance(data, dict):
            # A declared, bounded integer field reports its own range (seed: "-1 (random) or 0..4294967295").
            problems = [(loc, message, value) for loc, message, value in unusable_values(data)
                        if not (isinstance(value, int) and len(loc) == 1 and loc[0] in cls.model_fields
                                and range_text(cls.model_fields[str(loc[0])].metadata))]
            if problems:
                raise ValidationError.from_exception_data(cls.__name__, [
                    InitErrorDetails(type=PydanticCustomError("unusable_value", message), loc=loc, input=value)
                    for loc, message, value in problems])
        try:
            return handler(data)
        except ValidationError as exc:
            raise ValidationError.from_exception_data(cls.__name__, [_reworded(cls, error)
                                                                     for error in exc.errors()]) from None


Seed = Annotated[int, Field(ge=-1, le=MAX_SEED, json_schema_extra={"allowed": f"-1 (random) or 0..{MAX_SEED}"})]
"""A seed: ``-1`` draws a random one (A1111), else ``0..2**32-1``."""
