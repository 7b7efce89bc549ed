"""Each preprocessor's output, on a picture whose content is known: a dark left half, a light right half with
a vertical edge at x = 32, and a pure red patch beside a grey patch of the same HSV value."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules.controlnet.preprocessors import build_registry, run_preprocessor

SIZE = 64
EDGE = 32
DARK, LIGHT = 40, 220


def _halves() -> Image.Image:
    pixels = np.full((SIZE, SIZE, 3), DARK, np.uint8)
    pixels[:, EDGE:] = LIGHT
    return Image.fromarray(pixels)


def _red_and_grey() -> Image.Image:
    pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
    pixels[:, :EDGE] = (200, 0, 0)
    pixels[:, EDGE:] = (200, 200, 200)
    return Image.fromarray(pixels)


def _run(name: str, image: Image.Image, a: float = -1) -> np.ndarray:
    out = run_preprocessor(build_registry(), name, image, resolution=SIZE, threshold_a=a)
    return np.asarray(out).astype(np.int16)


FAR_LEFT, FAR_RIGHT = (slice(None), slice(0, EDGE - 20)), (slice(None), slice(EDGE + 20, SIZE))  # 3+ sigmas off
NEAR_EDGE = (slice(None), slice(EDGE - 3, EDGE + 3))


def test_none_and_invert() -> None:
    source = np.asarray(_halves()).astype(np.int16)
    assert np.array_equal(_run("none", _halves()), source)
    assert np.array_equal(_run("invert", _halves()), 255 - source)


@pytest.mark.parametrize("name", ["canny", "scribble_xdog", "lineart_standard"])
def test_line_detectors_draw_the_edge_and_nothing_else(name: str) -> None:
    lines = _run(name, _halves())
    assert lines[NEAR_EDGE].max() >= 128, f"{name} missed the edge"
    assert lines[FAR_LEFT].max() == 0 and lines[FAR_RIGHT].max() == 0, f"{name} drew lines in flat areas"


def test_threshold_and_binary_split_at_the_level() -> None:
    thresholded = _run("threshold", _halves(), 127)
    assert (thresholded[:, :EDGE] == 0).all() and (thresholded[:, EDGE:] == 255).all()
    binary = _run("binary", _halves(), 127)  # dark strokes become white on black
    assert (binary[:, :EDGE] == 255).all() and (binary[:, EDGE:] == 0).all()


def test_blur_and_tile_resample_soften_the_edge_and_keep_the_flat_colours() -> None:
    step = np.abs(np.diff(np.asarray(_halves()).astype(np.int16)[SIZE // 2, :, 0])).max()
    for name, value in (("blur_gaussian", 3.0), ("tile_resample", 4.0)):
        soft = _run(name, _halves(), value)
        row = soft[SIZE // 2, :, 0]
        assert np.abs(np.diff(row)).max() < step / 2, f"{name} left the edge sharp"
        assert abs(row[2] - DARK) <= 3 and abs(row[-3] - LIGHT) <= 3, f"{name} changed the flat colours"
        if name == "blur_gaussian":  # (the bicubic upsampling of tile_resample may ring a little)
            assert (np.diff(row) >= 0).all(), "the blurred dark-to-light transition must not reverse"


def test_color_grid_is_the_average_colour_of_a_cell() -> None:
    grid = _run("color", _halves())  # one 64x64 cell
    assert (grid == grid[0, 0]).all()
    assert abs(int(grid[0, 0, 0]) - (DARK + LIGHT) // 2) <= 12


def test_shuffle_keeps_the_colours_moves_the_content_and_is_reproducible() -> None:
    first, again = _run("shuffle", _halves(), 7), _run("shuffle", _halves(), 7)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, np.asarray(_halves()).astype(np.int16))
    assert first.min() >= DARK - 1 and first.max() <= LIGHT + 1  # only the input's colours, blended
    assert not np.array_equal(first, _run("shuffle", _halves(), 8))


def test_recolor_keeps_lightness_or_value_only() -> None:
    luminance, intensity = _run("recolor_luminance", _red_and_grey()), _run("recolor_intensity", _red_and_grey())
    for grey in (luminance, intensity):
        assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    # HSV value: red (200, 0, 0) is as bright as grey 200; CIE lightness: red is much darker than that grey
    assert abs(intensity[0, 0, 0] - intensity[0, -1, 0]) <= 2 and abs(intensity[0, 0, 0] - 200) <= 2
    assert luminance[0, -1, 0] - luminance[0, 0, 0] >= 40
