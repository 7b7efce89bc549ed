"""Extensions' ``preload.py``: A1111's ``preload(parser)`` hook, run before the command line is parsed.

An extension that declares its own flags does so in ``preload.py`` (``parser.add_argument("--my-flag")``).
:func:`preload_extensions` runs the ``preload`` function of every enabled extension against the very parser
Easel's flags are declared on (see :func:`modules.core.settings.parse_flags`), so the extension's flags are
accepted on the command line, listed by ``--help``, and read as ``shared.cmd_opts.<name>`` (value or default);
a flag nobody declares is still an error. Which extensions are enabled comes from ``config.json`` in the data
folder the same command line names (``--data-dir``/``EASEL_DATA_DIR``), read without validation: the settings
are not loaded yet. Standard library only: this runs before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modules.extensions.discovery import discover_extensions

log = logging.getLogger(__name__)


@dataclass
class PreloadReport:
    ran: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # extension -> error


def _disabled_extensions(parser: argparse.ArgumentParser, argv: Sequence[str],
                         environ: Mapping[str, str]) -> tuple[list[str], str]:
    from modules.core.paths import REPO_ROOT

    # --help would print the list (without the extensions' flags) and exit from this early look
    known, _ = parser.parse_known_args([arg for arg in argv if arg not in ("-h", "--help")])
    data_dir = getattr(known, "data_dir", None) or environ.get("EASEL_DATA_DIR") or REPO_ROOT / "data"
    config = Path(data_dir).expanduser() / "config.json"
    try:
        raw = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    except (OSError, ValueError):
        raw = {}
    disabled = raw.get("disabled_extensions") if isinstance(raw, dict) else None
    disable_all = raw.get("disable_all_extensions") if isinstance(raw, dict) else None
    return ([str(name) for name in disabled] if isinstance(disabled, list) else [],
            str(disable_all or "none"))


def preload_extensions(parser: argparse.ArgumentParser, argv: Sequence[str], roots: Sequence[Path],
                       environ: Mapping[str, str] | None = None) -> PreloadReport:
    """Run ``preload(parser)`` of each enabled extension under ``roots``; a failing one is reported, not fatal."""
    report = PreloadReport()
    disabled, disable_all = _disabled_extensions(parser, argv, os.environ if environ is None else environ)
    if disable_all in ("all", "extra"):
        return report
    for extension in discover_extensions(roots, disabled):
        script = extension.path / "preload.py"
        if not extension.enabled or not script.is_file():
            continue
        name = "easel_preload_" + "".join(ch if ch.isalnum() else "_" for ch in extension.name)
        try:
            spec = importlib.util.spec_from_file_location(name, script)
            if spec is None or spec.loader is None:
                raise ImportError(f"{script} is not a loadable Python file")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            preload = getattr(module, "preload", None)
            if callable(preload):
                preload(parser)
            report.ran.append(extension.name)
        except BaseException as exc:  # an extension's preload must not stop Easel from starting
            if isinstance(exc, KeyboardInterrupt):
                raise
            report.failed[extension.name] = f"{exc.__class__.__name__}: {exc}"
            log.error("extension %s: preload.py failed: %s\n%s", extension.name, exc, traceback.format_exc())
    return report
