"""Seamless textures (``tiling: true``): circular padding on every Conv2d of the UNet and the VAE for one run.

With wrap-around padding, the left edge of every feature map is the right edge's neighbour (and the top the
bottom's), so the generated picture tiles without a seam. The patch only changes ``padding_mode`` on the
existing modules (no weights touched) and is undone when the run ends, successful or not.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from modules.processing.run import ProcessingRun

CIRCULAR = "circular"
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
Patched = list[tuple[torch.nn.Conv2d, PaddingMode]]


def _convolutions(modules: Iterable[Any]) -> Iterator[torch.nn.Conv2d]:
    for module in modules:
        if module is None:
            continue
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d):
                yield layer


def make_circular(modules: Iterable[Any]) -> Patched:
    """Set circular padding; return what to restore."""
    changed: Patched = []
    for conv in _convolutions(modules):
        if conv.padding_mode != CIRCULAR:
            changed.append((conv, conv.padding_mode))
            conv.padding_mode = "circular"
    return changed


def restore(changed: Patched) -> None:
    for conv, mode in changed:
        conv.padding_mode = mode


@contextmanager
def circular_padding(*modules: Any) -> Iterator[None]:
    changed = make_circular(modules)
    try:
        yield
    finally:
        restore(changed)


def pipeline_modules(pipe: Any) -> list[Any]:
    return [getattr(pipe, "unet", None), getattr(pipe, "vae", None)]


class TilingPatch:
    """The processor's per-run patch: circular padding when ``run.tiling``, restored when the run ends."""

    def __init__(self) -> None:
        self._active: dict[int, Patched] = {}
        self._lock = threading.Lock()

    def apply(self, run: ProcessingRun) -> None:
        if not run.tiling or run.sd_model is None:
            return
        changed = make_circular(pipeline_modules(run.sd_model.pipe))
        with self._lock:
            self._active[id(run)] = changed

    def finish(self, run: ProcessingRun) -> None:
        with self._lock:
            changed = self._active.pop(id(run), None)
        if changed:
            restore(changed)

