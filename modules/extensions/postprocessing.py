"""Running extensions' A1111 ``ScriptPostprocessing`` scripts in Easel's extras job.

A1111 v1.10 runs every postprocessing script on each extras image, in its preferred order: first by the position
of the script's ``name`` in the ``postprocessing_operation_order`` option, then by ``order``, then by ``name``;
scripts named in ``postprocessing_disable_in_extras`` are left out. Each script's ``ui()`` returns a dict of named
controls; the script's ``process(pp, **args)`` receives one keyword per control. The extras API requests
(``/sdapi/v1/extra-single-image``, ``/sdapi/v1/extra-batch-images``) carry no arguments for extension scripts, so
A1111 passes ``None`` for every control (a script gated by an "enable" checkbox does nothing); Easel does the same.

Easel's own upscaling and face restoration run as one step with A1111's ``Upscale`` script's place (name
``Upscale``, order 1000). ``process_firstpass`` runs for every script before any ``process``; then each script
processes the image and every extra image the scripts before it added (``pp.extra_images``). A script that
raises is skipped for that image and reported in the job's warnings; the image goes on through the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from modules.scripts_postprocessing import PostprocessedImage, ScriptPostprocessing

log = logging.getLogger(__name__)

BUILTIN_NAME = "Upscale"
BUILTIN_ORDER = 1000


def postprocessing_classes(module: ModuleType) -> list[type[ScriptPostprocessing]]:
    """Every ``ScriptPostprocessing`` subclass in a script module's namespace (defined there or imported)."""
    return [value for value in list(vars(module).values())
            if isinstance(value, type) and issubclass(value, ScriptPostprocessing)
            and value is not ScriptPostprocessing]


@dataclass
class _Step:
    name: str
    order: float
    script: ScriptPostprocessing | None  # None: Easel's built-in upscale and face restoration


@dataclass
class PostprocessingRunner:
    """The loaded postprocessing scripts (A1111's ``scripts.scripts_postproc``)."""

    classes: list[tuple[type[ScriptPostprocessing], str, str]]  # (class, owner, file)
    scripts: list[ScriptPostprocessing] = field(default_factory=list)
    owners: dict[int, str] = field(default_factory=dict)
    ui_ready: bool = False

    def __post_init__(self) -> None:
        for cls, owner, filename in self.classes:
            try:
                script = cls()
            except Exception:
                log.exception("extension %s: postprocessing script %s could not be created", owner, cls.__name__)
                continue
            script.filename = filename
            if not script.name:
                script.name = cls.__name__
            self.scripts.append(script)
            self.owners[id(script)] = owner

    def setup_ui(self) -> None:
        """Run each ``ui()`` once inside ``gr.Blocks()`` to learn its control names (the ``process`` keywords)."""
        if self.ui_ready:
            return
        import gradio

        with gradio.Blocks():
            for script in self.scripts:
                try:
                    controls = script.ui() or {}
                except Exception:
                    log.exception("postprocessing script %s: ui() failed", script.name)
                    controls = {}
                script.controls = dict(controls) if isinstance(controls, dict) else {}
        self.ui_ready = True

    def ordered(self, operation_order: Sequence[str], disabled: Iterable[str]) -> list[_Step]:
        steps = [_Step(str(script.name), float(script.order), script) for script in self.scripts]
        steps.append(_Step(BUILTIN_NAME, BUILTIN_ORDER, None))
        left_out = set(disabled)
        order_list = list(operation_order)

        def key(item: tuple[int, _Step]) -> tuple[int, float, str, int]:
            index, step = item
            position = order_list.index(step.name) if step.name in order_list else len(steps)
            return position, step.order, step.name, index

        kept = [(index, step) for index, step in enumerate(steps) if step.script is None or step.name not in left_out]
        return [step for _, step in sorted(kept, key=key)]

    def process_image(self, image: Any, builtin: Callable[[Any, dict[str, Any]], Any], *,
                      operation_order: Sequence[str] = (), disabled: Iterable[str] = (),
                      notes: list[str] | None = None) -> list[tuple[Any, dict[str, Any]]]:
        """``image`` as A1111's ``PostprocessedImage`` through :meth:`run`; ``builtin(image, info)`` is Easel's
        step (returns the new image, adds to ``info``). Returns ``(image, info)`` for the image and each extra
        image, leaving out (with a note) anything a script left that is not a PIL image."""
        from PIL import Image

        pp = PostprocessedImage(image)

        def step(target: PostprocessedImage) -> None:
            target.image = builtin(target.image, target.info)

        self.run(pp, step, operation_order=operation_order, disabled=disabled, notes=notes)
        outputs = []
        for item in [pp, *pp.extra_images]:
            if isinstance(item.image, Image.Image):
                outputs.append((item.image, item.info))
            elif notes is not None:
                note = "a postprocessing script left something that is not an image; it was left out"
                if note not in notes:
                    notes.append(note)
        return outputs

    def run(self, pp: PostprocessedImage, builtin: Callable[[PostprocessedImage], None], *,
            operation_order: Sequence[str] = (), disabled: Iterable[str] = (),
            notes: list[str] | None = None) -> None:
        """Process ``pp`` (and the extra images scripts add) through every step; ``builtin`` is Easel's step."""
        self.setup_ui()
        steps = self.ordered(operation_order, disabled)
        calls = [(step, {name: None for name in (step.script.controls or {})} if step.script else {})
                 for step in steps]
        for step, args in calls:
            if step.script is not None:
                self._call(step.script, "process_firstpass", pp, args, notes)
        images = [pp]
        for step, args in calls:
            for image in list(images):
                if step.script is None:
                    if not image.disable_processing:
                        builtin(image)
                    continue
                if not image.disable_processing:
                    self._call(step.script, "process", image, args, notes)
                for extra in image.extra_images:
                    images.append(extra if isinstance(extra, PostprocessedImage) else image.create_copy(extra))
                image.extra_images.clear()
        pp.extra_images = images[1:]

    def _call(self, script: ScriptPostprocessing, method: str, pp: PostprocessedImage, args: dict[str, Any],
              notes: list[str] | None) -> None:
        try:
            getattr(script, method)(pp, **args)
        except Exception as exc:
            owner = self.owners.get(id(script), "?")
            log.exception("extension %s: postprocessing script %s.%s failed", owner, script.name, method)
            if notes is not None:
                note = f"postprocessing script {script.name} failed: {exc.__class__.__name__}: {exc}"
                if note not in notes:
                    notes.append(note)
