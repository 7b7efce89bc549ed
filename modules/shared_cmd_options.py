"""A1111's ``modules.shared_cmd_options``: ``cmd_opts`` (the launch flags) and ``parser``."""

from __future__ import annotations

from typing import Any

from modules.shared import cmd_opts

__all__ = ["cmd_opts"]


def __getattr__(name: str) -> Any:
    if name == "parser":
        from modules.cmd_args import parser

        return parser
    raise AttributeError(f"module 'modules.shared_cmd_options' has no attribute {name!r}")
