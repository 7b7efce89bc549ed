"""Grids of images: plain (A1111's ``image_grid``) and labelled with row/column texts (the X/Y/Z plot's)."""


import logging
import math
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw, ImageFont

logger = logging.getLogger(__name__)

def image_grid(images: Sequence[Image.Image], rows: int | None = None, margin: int = 0) -> Image.Image:
    """Paste ``images`` row by row into one grid.

    The default row count is A1111's automatic one: ``floor(sqrt(n))``, lowered until it divides ``n``, so a
    grid has no empty cells (6 -> 2x3, 8 -> 2x4, 7 -> 1x7). Cells take the largest image's size.
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    count = len(images)
    if rows is None or rows <= 0:
        rows = max(1, math.isqrt(count))
        while count % rows:
            rows -= 1
    rows = min(rows, count)
    cols = math.ceil(count / rows)
    width = max(im.width for im in images)
    height = max(im.height for im in images)
    grid = Image.new("RGB", (cols * width + (cols - 1) * margin, rows * height + (rows - 1) * margin), "black")
    for index, im in enumerate(images):
        x, y = index % cols, index // cols
        grid.paste(im.convert("RGB"), (x * (width + margin), y * (height + margin)))
    return grid


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, max_width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and draw.textlength(candidate, font=font) > max_width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _label_lines(draw: ImageDraw.ImageDraw, label: str | Sequence[str], font: Any, max_width: int) -> list[str]:
    texts = [label] if isinstance(label, str) else list(label)
    return [line for text in texts for line in _wrap(draw, str(text), font, max_width)]


def draw_grid_annotations(
    grid: Image.Image,
    width: int,
    height: int,
    hor_texts: Sequence[str | Sequence[str]],
    ver_texts: Sequence[str | Sequence[str]],
    margin: int = 0,
) -> Image.Image:
    """Return ``grid`` with column labels above it and row labels to its left (the XYZ-plot look).

    ``width``/``height`` are one cell's size; each label is a string or several lines. Uses Pillow's bundled
    font, so nothing is downloaded.
    """
    font_size = max(10, (width + height) // 25)
    font = _font(font_size)
    line_height = font_size + font_size // 4
    spacing = font_size // 2
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad_left = width * 3 // 4 if ver_texts else 0
    col_lines = [_label_lines(probe, text, font, max(1, width - 2 * spacing)) for text in hor_texts]
    row_lines = [_label_lines(probe, text, font, max(1, pad_left - 2 * spacing)) for text in ver_texts]
    pad_top = (max(len(lines) for lines in col_lines) * line_height + 2 * spacing) if col_lines else 0

    result = Image.new("RGB", (grid.width + pad_left, grid.height + pad_top), "white")
    result.paste(grid, (pad_left, pad_top))
    draw = ImageDraw.Draw(result)

    def block(lines: list[str], cx: float, cy: float) -> None:
        top = cy - len(lines) * line_height / 2
        for i, line in enumerate(lines):
            draw.text((cx, top + i * line_height + line_height / 2), line, fill="black", font=font, anchor="mm")

    for col, lines in enumerate(col_lines):
        block(lines, pad_left + col * (width + margin) + width / 2, pad_top / 2)
    for row, lines in enumerate(row_lines):
        block(lines, pad_left / 2, pad_top + row * (height + margin) + height / 2)
    return result


def labelled_grid(
    images: Sequence[Image.Image],
    x_labels: Sequence[str | Sequence[str]],
    y_labels: Sequence[str | Sequence[str]],
    margin: int = 0,
) -> Image.Image:
    """A grid of ``len(y_labels)`` rows by ``len(x_labels)`` columns (images row-major), labelled on both axes."""
    cols, rows = max(1, len(x_labels)), max(1, len(y_labels))
    if len(images) != cols * rows:
        raise ValueError(f"labelled_grid needs {rows}x{cols} = {rows * cols} images, got {len(images)}")
    grid = image_grid(images, rows=rows, margin=margin)
    width = max(im.width for im in images)
    height = max(im.height for im in images)
    return draw_grid_annotations(grid, width, height, x_labels, y_labels, margin)
