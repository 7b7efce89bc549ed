"""One face restoration model (GFPGAN, RestoreFormer or CodeFormer weights) applied to every face of a picture.

The networks come from spandrel (GFPGAN and RestoreFormer in its main package, CodeFormer in
``spandrel_extra_arches``), detected from the state dict by a registry holding only these face architectures,
so an upscaler file dropped into a face folder is refused instead of being run as a face model. spandrel's own
call functions are bypassed: they feed the networks [0, 1] pixels (the networks expect [-1, 1]), use random
StyleGAN noise (GFPGAN) or torchvision (RestoreFormer); :data:`FACE_ARCHITECTURES` calls each network directly.

Per face: cut a square around the detected box with a margin, resize it to the network's 512x512, restore,
resize back, and paste it through a mask that fades out towards the cut's inner edges, scaled by the visibility.
Pixels outside every cut are never touched. Written here because spandrel stops at the network and facexlib's
alignment needs downloaded landmark weights.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from modules.core import cancellation
from modules.core.errors import ModelLoadError
from modules.faces.detection import FaceBox, FaceDetector
from modules.upscalers.models import ModelFile, import_spandrel

log = logging.getLogger(__name__)

FACE_SIZE = 512
"""GFPGAN's StyleGAN decoder and CodeFormer's codebook both work on 512x512 faces."""
DEFAULT_MARGIN = 0.4
"""Grow the detector's box by this fraction of its size on every side: the networks were trained on crops that
show the whole head, and a Haar box covers little more than eyes to mouth."""
FEATHER_FRACTION = 0.12
"""Width of the paste mask's fade, as a fraction of the cut's side."""

FaceNetworkCall = Callable[[torch.nn.Module, torch.Tensor, float], torch.Tensor]
"""(network, faces in [-1, 1] as (N, 3, 512, 512), CodeFormer weight) -> restored faces in [-1, 1]."""


def _gfpgan(network: torch.nn.Module, faces: torch.Tensor, weight: float) -> torch.Tensor:
    # the stored noise buffers instead of fresh noise: the same picture restores the same way every time
    return network(faces, return_rgb=False, randomize_noise=False)[0]


def _restoreformer(network: torch.nn.Module, faces: torch.Tensor, weight: float) -> torch.Tensor:
    return network(faces)[0]


def _codeformer(network: torch.nn.Module, faces: torch.Tensor, weight: float) -> torch.Tensor:
    # A1111's "CodeFormer weight": 0 = the codebook's face (strongest change), 1 = closest to the input
    return network(faces, weight=weight)[0]


FACE_ARCHITECTURES: dict[str, FaceNetworkCall] = {
    "GFPGAN": _gfpgan,
    "RestoreFormer": _restoreformer,
    "CodeFormer": _codeformer,
}
"""spandrel architecture id -> how to call it."""

@functools.cache
def face_registry() -> Any:
    """A spandrel ``ArchRegistry`` with only the face architectures (CodeFormer when spandrel_extra_arches is
    installed). A private registry, so spandrel's global one is left as the upscalers expect it."""
    spandrel = import_spandrel()
    from spandrel.architectures.GFPGAN import GFPGANArch
    from spandrel.architectures.RestoreFormer import RestoreFormerArch

    registry = spandrel.ArchRegistry()
    registry.add(spandrel.ArchSupport.from_architecture(GFPGANArch()),
                 spandrel.ArchSupport.from_architecture(RestoreFormerArch()))
    if codeformer_supported():
        from spandrel_extra_arches.architectures.CodeFormer import CodeFormerArch

        registry.add(spandrel.ArchSupport.from_architecture(CodeFormerArch()))
    else:
        log.info("spandrel_extra_arches is not installed; CodeFormer models cannot be loaded")
    return registry


def codeformer_supported() -> bool:
    """Whether spandrel_extra_arches is installed (looked up, not imported: importing it imports spandrel, which
    must go through :func:`import_spandrel`)."""
    return importlib.util.find_spec("spandrel_extra_arches") is not None


def load_face_model(file: ModelFile, device: torch.device, allow_pickle: bool,
                    architectures: tuple[str, ...]) -> Any:
    """Load ``file`` as one of ``architectures`` (spandrel ids); refuses pickle files without ``--allow-pickle``."""
    if file.is_pickle and not allow_pickle:
        raise ModelLoadError(f"{file.path.name} is a pickle file; start Easel with --allow-pickle to load it, or "
                             "convert it to .safetensors")
    spandrel = import_spandrel()
    registry = face_registry()
    try:
        descriptor = spandrel.ModelLoader(device=device, registry=registry).load_from_file(str(file.path))
    except spandrel.UnsupportedModelError as exc:
        extra = "" if codeformer_supported() else " (CodeFormer models need the spandrel_extra_arches package)"
        raise ModelLoadError(f"{file.path.name} is not a face restoration model Easel can load; expected "
                             f"{' or '.join(architectures)}{extra}") from exc
    arch = descriptor.architecture.id
    if arch not in architectures:
        raise ModelLoadError(f"{file.path.name} is a {arch} model; this folder takes {' or '.join(architectures)}")
    descriptor.model.eval()
    return descriptor


@dataclass
class RestoredImage:
    image: Image.Image
    faces: list[FaceBox] = field(default_factory=list)


class SpandrelFaceRestorer:
    """A1111's ``FaceRestoration`` for one model file. The network is loaded on first use by ``load`` (the owning
    service caches it); the detector finds the faces."""

    def __init__(self, name: str, file: ModelFile, load: Callable[[ModelFile], Any], detector: FaceDetector, *,
                 margin: float = DEFAULT_MARGIN) -> None:
        self.name = name
        self.file = file
        self.cmd_dir = str(file.path.parent)
        self._load = load
        self.detector = detector
        self.margin = margin

    def restore(self, image: Image.Image, *, visibility: float = 1.0, weight: float = 0.5) -> RestoredImage:
        """Restore every detected face; ``visibility`` 0 leaves the picture as it is, 1 pastes the faces fully."""
        image = image.convert("RGB")
        if visibility <= 0:
            return RestoredImage(image)
        boxes = self.detector.detect(image)
        if not boxes:
            return RestoredImage(image)
        descriptor = self._load(self.file)
        call = FACE_ARCHITECTURES[descriptor.architecture.id]
        pixels = np.asarray(image, dtype=np.float32).copy()
        for box in boxes:
            cancellation.checkpoint()  # one face is the unit of work a cancel waits for
            cut = box.crop_square(self.margin, image.width, image.height)
            region = pixels[cut.top:cut.bottom, cut.left:cut.right]
            restored = self._restore_face(descriptor.model, call, region, weight)
            mask = paste_mask(cut, image.width, image.height)[..., None] * min(1.0, visibility)
            pixels[cut.top:cut.bottom, cut.left:cut.right] = region * (1 - mask) + restored * mask
        result = Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))
        return RestoredImage(result, boxes)

    def _restore_face(self, network: torch.nn.Module, call: FaceNetworkCall, region: np.ndarray,
                      weight: float) -> np.ndarray:
        side = region.shape[0]
        face = Image.fromarray(region.round().clip(0, 255).astype(np.uint8))
        face = face.resize((FACE_SIZE, FACE_SIZE), Image.Resampling.LANCZOS if side < FACE_SIZE
                           else Image.Resampling.BICUBIC)
        device = next(network.parameters()).device
        tensor = torch.from_numpy(np.asarray(face, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        with torch.no_grad():
            output = call(network, tensor.to(device), float(weight)).float().cpu()
        array = ((output[0].clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
        restored = Image.fromarray(array.round().astype(np.uint8)).resize((side, side), Image.Resampling.LANCZOS)
        return np.asarray(restored, dtype=np.float32)


def paste_mask(cut: FaceBox, image_width: int, image_height: int) -> np.ndarray:
    """(side, side) weights in [0, 1]: 1 inside, fading to 0 towards each edge of the cut that lies inside the
    image (an edge on the image border needs no fade: nothing is beyond it)."""
    feather = max(1, round(cut.width * FEATHER_FRACTION))

    def axis(length: int, fade_start: bool, fade_end: bool) -> np.ndarray:
        position = np.arange(length, dtype=np.float32)
        values = np.ones(length, dtype=np.float32)
        if fade_start:
            values = np.minimum(values, (position + 0.5) / feather)
        if fade_end:
            values = np.minimum(values, (length - position - 0.5) / feather)
        return np.clip(values, 0.0, 1.0)

    rows = axis(cut.height, cut.top > 0, cut.bottom < image_height)
    columns = axis(cut.width, cut.left > 0, cut.right < image_width)
    return rows[:, None] * columns[None, :]
