"""The face restorer service: "GFPGAN" and "CodeFormer" (A1111's names) from user-supplied weight files.

``models/GFPGAN`` holds GFPGAN (or RestoreFormer) weights, ``models/Codeformer`` CodeFormer weights;
``.safetensors`` files always load, pickle files only with ``--allow-pickle``; nothing is ever downloaded. When a
folder holds several files the first by name is used. The most recently used network stays loaded.

Used by the extras job (``gfpgan_visibility``/``codeformer_visibility``), by txt2img/img2img ``restore_faces``
(model from the ``face_restoration_model`` option, CodeFormer weight from ``code_former_weight``) and listed by
``/sdapi/v1/face-restorers``.
"""

from __future__ import annotations

import builtins
import functools
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from modules.core.errors import EaselError, ModelLoadError, NotFoundError
from modules.faces.detection import FaceDetector, HaarFaceDetector
from modules.faces.restorer import SpandrelFaceRestorer, codeformer_supported, load_face_model
from modules.upscalers.models import ModelFile, scan_model_files

log = logging.getLogger(__name__)

DEFAULT_CODEFORMER_WEIGHT = 0.5


@dataclass(frozen=True)
class RestorerKind:
    folder: str  # the ModelPaths attribute
    architectures: tuple[str, ...]  # spandrel architecture ids the folder may hold


RESTORER_KINDS: dict[str, RestorerKind] = {
    "CodeFormer": RestorerKind("codeformer", ("CodeFormer",)),
    "GFPGAN": RestorerKind("gfpgan", ("GFPGAN", "RestoreFormer")),
}
"""A1111's face restorer names, in A1111's order (also the order a run without ``face_restoration_model``
tries them in)."""


class FaceRestorerService:
    def __init__(self, model_paths: Any, *, device: torch.device | None = None, allow_pickle: bool = False,
                 detector: FaceDetector | None = None) -> None:
        self.folders: dict[str, Path] = {name: getattr(model_paths, kind.folder)
                                         for name, kind in RESTORER_KINDS.items()}
        self.device = device or torch.device("cpu")
        self.allow_pickle = allow_pickle
        self.detector: FaceDetector = detector or HaarFaceDetector()
        self._lock = threading.Lock()
        self._loaded: tuple[Path, Any] | None = None
        self._restorers: dict[str, SpandrelFaceRestorer] = {}
        self._unavailable: dict[str, str] = {}
        self.refresh()

    def warn_if_unusable(self) -> None:
        """Log once at start-up when restorers are installed but the face detector cannot run."""
        if self.names() and isinstance(self.detector, HaarFaceDetector):
            reason = self.detector.unavailable_reason()
            if reason:
                log.warning("face restorers %s are installed but cannot run: %s", ", ".join(self.names()), reason)

    # -- registry ---------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        restorers: dict[str, SpandrelFaceRestorer] = {}
        unavailable: dict[str, str] = {}
        for name, folder in self.folders.items():
            files, skipped = scan_model_files(folder, self.allow_pickle)
            if files:
                if name == "CodeFormer" and not codeformer_supported():
                    unavailable[name] = ("CodeFormer models need the spandrel_extra_arches package "
                                         "(pip install --no-deps spandrel_extra_arches)")
                    continue
                load = functools.partial(self._model, architectures=RESTORER_KINDS[name].architectures)
                restorers[name] = SpandrelFaceRestorer(name, files[0], load, self.detector)
                if len(files) > 1:
                    log.info("%s: using %s (of %d files in %s)", name, files[0].path.name, len(files), folder)
            elif skipped:
                unavailable[name] = (f"{skipped[0].name} is a pickle file; start Easel with --allow-pickle to load "
                                     "it, or convert it to .safetensors")
        for name, reason in unavailable.items():
            log.info("face restorer %s unavailable: %s", name, reason)
        with self._lock:
            self._restorers, self._unavailable, self._loaded = restorers, unavailable, None

    def names(self) -> builtins.list[str]:
        return list(self._restorers)

    def get(self, name: str) -> SpandrelFaceRestorer:
        """The restorer called ``name``; a clear error saying what to install when there is none."""
        restorer = self._restorers.get(name)
        if restorer is not None:
            return restorer
        if name not in RESTORER_KINDS:
            raise NotFoundError(f"unknown face restorer {name!r}; Easel has {', '.join(RESTORER_KINDS)}")
        reason = self._unavailable.get(name)
        if reason is not None:
            raise ModelLoadError(reason)
        raise NotFoundError(f"no {name} model is installed (put its .safetensors weights in {self.folders[name]})")

    def list(self) -> list[dict[str, Any]]:
        """A1111's ``/sdapi/v1/face-restorers`` items."""
        return [{"name": name, "cmd_dir": restorer.cmd_dir} for name, restorer in self._restorers.items()]

    def _model(self, file: ModelFile, architectures: tuple[str, ...]) -> Any:
        with self._lock:
            if self._loaded is not None and self._loaded[0] == file.path:
                return self._loaded[1]
            self._loaded = None  # free the previous network before loading the next
            model = load_face_model(file, self.device, self.allow_pickle, architectures)
            self._loaded = (file.path, model)
            return model

    def unload(self) -> None:
        with self._lock:
            self._loaded = None

    # -- generation (txt2img/img2img ``restore_faces``) -------------------------------------------------------
    def restore_run_images(self, run: Any, images: builtins.list[Image.Image]
                           ) -> tuple[builtins.list[Image.Image], builtins.list[str]]:
        """Restore the faces of a run's decoded images with the ``face_restoration_model`` option's restorer
        (the first installed when unset), at full visibility, as A1111 does; warnings instead when it cannot."""
        options = run.opts
        name = options.face_restoration_model or next(iter(self._restorers), next(iter(RESTORER_KINDS)))
        weight = float(getattr(options, "code_former_weight", DEFAULT_CODEFORMER_WEIGHT))
        try:
            restorer = self.get(name)
            restored = [restorer.restore(image, visibility=1.0, weight=weight).image for image in images]
        except EaselError as exc:
            return images, [f"face restoration skipped: {exc.message}"]
        run.extra_generation_params["Face restoration"] = name
        return restored, []
