"""The Haar face detector: nothing in flat or noisy pictures, a drawn face found in image coordinates (also when
the picture is searched at a reduced size), and a clear message where OpenCV has no cascade classifier."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from modules.faces.detection import FaceDetectorUnavailable, HaarFaceDetector

DETECTOR = HaarFaceDetector()
REASON = DETECTOR.unavailable_reason()
needs_haar = pytest.mark.skipif(REASON is not None, reason=f"no Haar cascade here: {REASON}")


def _drawn_face(size: int) -> Image.Image:
    """A light oval with dark eyes, brows and mouth and a lighter nose: enough for the frontal-face cascade."""
    face = Image.new("L", (size, size), 40)
    draw = ImageDraw.Draw(face)
    unit, centre = size / 256, size / 2

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return centre + x0 * unit, centre + y0 * unit, centre + x1 * unit, centre + y1 * unit

    draw.ellipse(box(-70, -90, 70, 90), fill=200)
    for dx in (-30, 30):
        draw.ellipse(box(dx - 16, -28, dx + 16, -12), fill=50)
        draw.rectangle(box(dx - 20, -42, dx + 20, -36), fill=70)
    draw.ellipse(box(-8, -3, 8, 33), fill=150)
    draw.ellipse(box(-28, 42, 28, 58), fill=70)
    return face.filter(ImageFilter.GaussianBlur(2 * unit)).convert("RGB")


@needs_haar
def test_no_face_in_flat_or_noisy_pictures() -> None:
    assert DETECTOR.detect(Image.new("RGB", (256, 256), (128, 128, 128))) == []
    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    assert DETECTOR.detect(Image.fromarray(noise)) == []


@needs_haar
@pytest.mark.parametrize("width, height, size, left, top", [(400, 300, 160, 150, 60), (1600, 1200, 600, 700, 400)])
def test_a_drawn_face_is_found_in_image_coordinates(width: int, height: int, size: int, left: int,
                                                    top: int) -> None:
    picture = Image.new("RGB", (width, height), (40, 40, 40))
    picture.paste(_drawn_face(size), (left, top))
    boxes = DETECTOR.detect(picture)
    assert len(boxes) == 1
    box = boxes[0]
    centre_x, centre_y = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    assert abs(centre_x - (left + size / 2)) < size * 0.05
    assert abs(centre_y - (top + size / 2)) < size * 0.05
    assert 0.5 * size < box.width < 1.0 * size


@pytest.mark.skipif(REASON is None, reason="this OpenCV has the Haar cascade classifier")
def test_without_the_cascade_classifier_the_error_says_what_to_install() -> None:
    with pytest.raises(FaceDetectorUnavailable, match="opencv-python-headless<5"):
        DETECTOR.detect(Image.new("RGB", (64, 64)))
