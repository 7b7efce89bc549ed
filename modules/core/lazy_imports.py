"""Keep heavy optional packages out of the start path: diffusers, transformers and peft import them only to probe.

diffusers (``diffusers.quantizers``), transformers (``transformers.quantizers``) and peft (its LoRA layers for
quantized models) import bitsandbytes and torchao as soon as their model classes load, merely because the
packages are installed. Measured on this project's CPU after ``import torch``: bitsandbytes costs 3.0 s and
120 MiB of resident memory, torchao 2.3 s and 84 MiB, on every start. Start-up hides only the ones the
``quantization`` option does not use: diffusers' own quantizer for a method needs its library seen by that probe
(:func:`modules.quantization.methods.probe_packages`).

:func:`hide_from_library_probes` puts ``None`` into ``sys.modules`` for those names while the libraries load:
Python's documented way to make ``importlib.util.find_spec`` answer "absent" and ``import`` fail, which every
one of those probes respects. :func:`release` removes the marker again (the quantization methods call it before
they import the package), so the package stays usable by Easel's own code; the libraries keep the "absent" answer
they read at their import, so a method chosen after start-up is quantized by hand until the next start.
"""

from __future__ import annotations

import importlib.util
import logging
import sys

log = logging.getLogger(__name__)

#: Packages kept out of the libraries' import-time probes (import names).
HIDDEN_FROM_PROBES: tuple[str, ...] = ("bitsandbytes", "torchao")


def hide_from_library_probes(names: tuple[str, ...] = HIDDEN_FROM_PROBES) -> list[str]:
    """Mark ``names`` absent for import probes; returns those that were installed and are now hidden.

    Run it before diffusers' or transformers' model classes are imported (their probes' answers are read then).
    A package already imported is left alone: hiding it then would change nothing and break its users.
    """
    hidden = []
    for name in names:
        if name in sys.modules:
            continue
        if importlib.util.find_spec(name) is None:
            continue
        sys.modules[name] = None  # type: ignore[assignment]
        hidden.append(name)
    if hidden:
        log.debug("kept from the libraries' import probes: %s", ", ".join(hidden))
    return hidden


def release(name: str) -> None:
    """Undo :func:`hide_from_library_probes` for ``name`` (no-op when it was not hidden)."""
    if name in sys.modules and sys.modules[name] is None:
        del sys.modules[name]
