"""A1111's ``modules.cmd_args``: ``parser`` is an argparse parser holding Easel's flags. Extensions declare their
own flags in ``preload.py`` (``preload(parser)``), which Easel runs on the parser it parses the command line
with; adding arguments to this object later changes nothing."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "parser":
        from modules.core.settings import build_arg_parser

        return build_arg_parser()
    raise AttributeError(f"module 'modules.cmd_args' has no attribute {name!r}")
