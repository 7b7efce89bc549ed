"""Typed, bounded declarations of a script's positional arguments (an Easel addition to A1111's Script API).

A script declares ``api_args = MyArgs`` where ``MyArgs`` subclasses :class:`ScriptArgs` with one field per
positional argument, in order. The scripts runner validates every request's arguments against it before the
job is queued (and again when the job runs, for the UI's path), so a wrong type or an out-of-range value is a
422 naming the argument by index and name (``script_args[4] (x_values): ...``) instead of a failure deep in
the script. ``null`` in a position means that argument's default. A script may also override
:meth:`modules.extensions.script_api.Script.check_args` for checks that need the request (prompt, sizes) or
the resource limits.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import ConfigDict, ValidationError

from modules.core.errors import UserInputError
from modules.core.validation import StrictInput

RE_UNION_TAG = re.compile(r"^(int|str|float|bool|none|list\[.*|dict\[.*|literal\[.*|function-.*|.*\]\])$")
"""Pydantic's names of union branches in an error's loc (``int``, ``literal['a','b']``): not argument names."""


class ScriptArgs(StrictInput):
    """Base of argument declarations: fields in positional order; extra positions are refused."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def names(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def from_positional(cls, values: Sequence[Any], field_prefix: str = "script_args") -> ScriptArgs:
        names = cls.names()
        if len(values) > len(names):
            raise UserInputError(field_prefix, f"at most {len(names)} arguments ({', '.join(names)}); "
                                               f"got {len(values)}")
        data = {name: value for name, value in zip(names, values, strict=False) if value is not None}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = tuple(first.get("loc", ()))
            name = str(loc[0]) if loc else names[0]
            index = names.index(name) if name in names else 0
            inner = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:]
                            if isinstance(part, int) or not RE_UNION_TAG.match(str(part)))
            raise argument_error(field_prefix, index, name + inner, str(first.get("msg", "invalid value"))) \
                from None


def argument_error(field_prefix: str, index: int, name: str, message: str) -> UserInputError:
    """The 422 for argument ``index`` (``name``) of a script; its field reads ``script_args[4] (x_values)``."""
    return UserInputError(f"{field_prefix}[{index}] ({name})", message)


def declared_index(args_model: type[ScriptArgs] | None, name: str) -> int:
    """Position of argument ``name`` in a declaration (0 when undeclared)."""
    if args_model is None or name not in args_model.model_fields:
        return 0
    return args_model.names().index(name)
