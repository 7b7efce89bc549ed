"""Finding faces to restore, without downloaded weights.

Face restorers (GFPGAN, CodeFormer) work on one roughly centred face at 512x512, so the picture is searched for
faces first and each face is cut out with a margin. A1111 does this with facexlib's RetinaFace, whose weights
are downloaded on first use; Easel downloads nothing, so the default detector is OpenCV's frontal-face Haar
cascade, which ships inside the ``opencv-python`` 4.x wheels. OpenCV 5 moved the cascade classifier (and its data
files) out of the main package; there :class:`HaarFaceDetector` says so instead of finding nothing.

Detectors sit behind the small :class:`FaceDetector` protocol so tests (and a better detector later) can supply
boxes without OpenCV.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from modules.core.errors import UnsupportedError

HAAR_FRONTAL_FACE = "haarcascade_frontalface_default.xml"
DETECTION_MAX_SIDE = 1024
"""Larger pictures are searched at this size (boxes are scaled back): the cascade's cost grows with the area."""


@dataclass(frozen=True)
class FaceBox:
    """A face's bounding box in image pixel coordinates (right and bottom exclusive)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def crop_square(self, margin: float, image_width: int, image_height: int) -> FaceBox:
        """The square cut out around this face: the larger side grown by ``margin`` of it on every side,
        centred on the face and shifted (or shrunk) to stay inside the image."""
        side = round(max(self.width, self.height) * (1 + 2 * margin))
        side = max(1, min(side, image_width, image_height))
        centre_x, centre_y = (self.left + self.right) / 2, (self.top + self.bottom) / 2
        left = min(max(round(centre_x - side / 2), 0), image_width - side)
        top = min(max(round(centre_y - side / 2), 0), image_height - side)
        return FaceBox(left, top, left + side, top + side)


class FaceDetector(Protocol):
    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in ``image``, largest first, in its pixel coordinates."""
        ...


class FaceDetectorUnavailable(UnsupportedError):
    """The detector cannot run on this install; the message says what to install."""


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade. The classifier is built on first use and shared under a lock (OpenCV
    does not promise that one classifier may run on two threads at once)."""

    def __init__(self, cascade_file: Path | None = None, *, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size_fraction: float = 0.04) -> None:
        self.cascade_file = cascade_file
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size_fraction = min_size_fraction
        self._lock = threading.Lock()
        self._classifier: Any = None

    def unavailable_reason(self) -> str | None:
        """Why this detector cannot run here, or None when it can."""
        try:
            self._load()
        except FaceDetectorUnavailable as exc:
            return exc.message
        return None

    def detect(self, image: Image.Image) -> list[FaceBox]:
        import cv2

        gray = np.asarray(image.convert("L"))
        height, width = gray.shape
        scale = min(1.0, DETECTION_MAX_SIDE / max(width, height))
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, round(width * scale)), max(1, round(height * scale))),
                              interpolation=cv2.INTER_AREA)
        smallest = max(16, round(min(gray.shape) * self.min_size_fraction))
        with self._lock:
            classifier = self._load()
            found = classifier.detectMultiScale(gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                                                minSize=(smallest, smallest))
        boxes = []
        for x, y, w, h in np.asarray(found, dtype=np.float64).reshape(-1, 4):
            boxes.append(FaceBox(max(0, round(x / scale)), max(0, round(y / scale)),
                                 min(width, round((x + w) / scale)), min(height, round((y + h) / scale))))
        return sorted(boxes, key=lambda box: box.width * box.height, reverse=True)

    def _load(self) -> Any:
        if self._classifier is not None:
            return self._classifier
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            raise FaceDetectorUnavailable(
                f"face detection needs OpenCV's Haar cascade classifier, which OpenCV {cv2.__version__} does not "
                "include; install opencv-python-headless<5 (4.x wheels ship the classifier and its face model)")
        path = self.cascade_file
        if path is None:
            folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
            path = Path(folder) / HAAR_FRONTAL_FACE
        if not path.is_file():
            raise FaceDetectorUnavailable(f"the face detector's cascade file {path} is missing; reinstall "
                                          "opencv-python-headless 4.x, which ships it")
        classifier = cv2.CascadeClassifier(str(path))
        if classifier.empty():
            raise FaceDetectorUnavailable(f"OpenCV could not read the face detector's cascade file {path}")
        self._classifier = classifier
        return classifier
