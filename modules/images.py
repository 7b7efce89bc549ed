"""A1111's ``modules.images`` for drop-in scripts: ``save_image``, grids and tiles, onto Easel's image store.

``save_image`` keeps A1111's signature; the file lands under the outputs root (the image store confines every
write there, so a script's ``path`` argument only chooses between samples and grids of its tab). The
``before_image_saved``/``image_saved`` callbacks run around it, as around every save the image store makes.
"""

from __future__ import annotations

import math
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from PIL import Image

from modules.extensions import compat
from modules.extensions.callbacks import ImageGridLoopParams
from modules.processing.filenames import sanitize_filename_part
from modules.processing.grids import draw_grid_annotations as _draw_annotations
from modules.processing.grids import image_grid as _image_grid
from modules.processing.grids import labelled_grid
from modules.processing.image_metadata import read_infotext

__all__ = ["Grid", "GridAnnotation", "combine_grid", "draw_grid_annotations", "image_grid", "labelled_grid",
           "read_info_from_image", "resize_image", "sanitize_filename_part", "save_image", "split_grid"]

LANCZOS = Image.Resampling.LANCZOS
NEAREST = Image.Resampling.NEAREST


class GridAnnotation:
    """One label line of a grid axis (A1111 strikes through inactive ones; Easel draws them plainly)."""

    def __init__(self, text: str = "", is_active: bool = True) -> None:
        self.text = text
        self.is_active = is_active
        self.size: Any = None


def _texts(labels: Sequence[Any]) -> list[list[str]]:
    result = []
    for label in labels:
        items = label if isinstance(label, (list, tuple)) else [label]
        result.append([item.text if isinstance(item, GridAnnotation) else str(item) for item in items])
    return result


def image_grid(imgs: Sequence[Image.Image], batch_size: int = 1, rows: int | None = None) -> Image.Image:
    """A1111's ``image_grid``; ``on_image_grid`` callbacks may change the columns and rows."""
    if rows is None:
        rows = max(1, math.isqrt(len(imgs)))
        while len(imgs) % rows:
            rows -= 1
    cols = math.ceil(len(imgs) / rows)
    params = ImageGridLoopParams(list(imgs), cols, rows)
    compat.callbacks().call("image_grid", params)
    return _image_grid(params.imgs, rows=params.rows)


def draw_grid_annotations(im: Image.Image, width: int, height: int, hor_texts: Sequence[Any],
                          ver_texts: Sequence[Any], margin: int = 0) -> Image.Image:
    return _draw_annotations(im, width, height, _texts(hor_texts), _texts(ver_texts), margin)


Grid = namedtuple("Grid", ["tiles", "tile_w", "tile_h", "image_w", "image_h", "overlap"])


def split_grid(image: Image.Image, tile_w: int = 512, tile_h: int = 512, overlap: int = 64) -> Grid:
    """Cut ``image`` into overlapping tiles: ``tiles`` is ``[(y, tile_h, [(x, tile_w, tile), ...]), ...]``."""
    w, h = image.width, image.height
    non_overlap_w, non_overlap_h = max(1, tile_w - overlap), max(1, tile_h - overlap)
    cols = max(1, math.ceil((w - overlap) / non_overlap_w))
    rows = max(1, math.ceil((h - overlap) / non_overlap_h))
    dx = (w - tile_w) / (cols - 1) if cols > 1 else 0
    dy = (h - tile_h) / (rows - 1) if rows > 1 else 0
    tiles = []
    for row in range(rows):
        y = max(0, min(int(row * dy), h - tile_h))
        row_tiles = []
        for col in range(cols):
            x = max(0, min(int(col * dx), w - tile_w))
            row_tiles.append([x, tile_w, image.crop((x, y, x + tile_w, y + tile_h))])
        tiles.append([y, tile_h, row_tiles])
    return Grid(tiles, tile_w, tile_h, w, h, overlap)


def combine_grid(grid: Grid) -> Image.Image:
    """Paste the tiles of ``grid`` back, blending each overlap linearly."""
    overlap = grid.overlap
    result = Image.new("RGB", (grid.image_w, grid.image_h))
    for y, h, row in grid.tiles:
        combined_row = Image.new("RGB", (grid.image_w, h))
        for x, w, tile in row:
            if x == 0 or overlap <= 0:
                combined_row.paste(tile.crop((0, 0, w, h)), (x, 0))
                continue
            blend = min(overlap, w)
            mask = Image.linear_gradient("L").rotate(90).resize((blend, h))  # 0 at the left: keep what is there
            combined_row.paste(tile.crop((0, 0, blend, h)), (x, 0), mask=mask)
            combined_row.paste(tile.crop((blend, 0, w, h)), (x + blend, 0))
        if y == 0 or overlap <= 0:
            result.paste(combined_row.crop((0, 0, combined_row.width, h)), (0, y))
            continue
        blend = min(overlap, h)
        mask = Image.linear_gradient("L").resize((combined_row.width, blend))
        result.paste(combined_row.crop((0, 0, combined_row.width, blend)), (0, y), mask=mask)
        result.paste(combined_row.crop((0, blend, combined_row.width, h)), (0, y + blend))
    return result


def upscale_with(name: str | None, image: Image.Image, scale: float) -> Image.Image:
    """Upscale by ``scale`` with a registered upscaler (the upscaler service) or Lanczos/Nearest."""
    width, height = round(image.width * scale), round(image.height * scale)
    if name in (None, "", "None", "Lanczos"):
        return image.resize((width, height), LANCZOS)
    if name == "Nearest":
        return image.resize((width, height), NEAREST)
    services = compat.binding().services
    registry = services.upscalers if services is not None else None
    if registry is None:
        from modules.core.errors import UserInputError

        raise UserInputError("upscaler", f"upscaler {name!r} not found; available: None, Lanczos, Nearest")
    result = registry.upscale(image, scale, name)
    return result if result.size == (width, height) else result.resize((width, height), LANCZOS)


def resize_image(resize_mode: int, im: Image.Image, width: int, height: int,
                 upscaler_name: str | None = None) -> Image.Image:
    """A1111 resize modes (0 just resize, 1 crop and resize, 2 resize and fill); upscaler used when growing."""
    from modules.processing.processor import resize_image as core_resize

    if upscaler_name and upscaler_name not in ("None", "Lanczos") and (im.width < width or im.height < height):
        im = upscale_with(upscaler_name, im, max(width / im.width, height / im.height))
    return core_resize(im, width, height, resize_mode)


def read_info_from_image(image: Image.Image) -> tuple[str | None, dict[str, Any]]:
    return read_infotext(image)


def flatten(img: Image.Image, bgcolor: str) -> Image.Image:
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, bgcolor)
        background.paste(img, mask=img)
        img = background
    return img.convert("RGB")


def save_image(image: Image.Image, path: str | None, basename: str, seed: Any = None, prompt: str | None = None,
               extension: str = "png", info: str | None = None, short_filename: bool = False,
               no_prompt: bool = False, grid: bool = False, pnginfo_section_name: str = "parameters",
               p: Any = None, existing_info: dict[str, Any] | None = None, forced_filename: str | None = None,
               suffix: str = "", save_to_dirs: bool | None = None) -> tuple[str, str | None]:
    """Save ``image`` with its infotext; returns ``(path, None)`` like A1111 (no ``.txt`` sidecar)."""
    services = compat.bound()
    is_img2img = bool(getattr(p, "is_img2img", False)) or "img2img" in str(path or "")
    kind = ("img2img" if is_img2img else "txt2img") + ("-grids" if grid else "")
    text = info
    if existing_info and pnginfo_section_name in existing_info and text is None:
        text = str(existing_info[pnginfo_section_name])
    pattern = forced_filename if forced_filename else (None if not short_filename else "[seed]")
    if forced_filename is None and (basename or suffix) and not grid:
        pattern = f"{basename}{'-' if basename else ''}[seed]{suffix}" if not short_filename else basename + suffix
    saved = services.image_store.save(image, kind=kind, seed=seed, prompt=prompt or "", infotext=text,
                                      fmt=extension, filename_pattern=pattern, save_to_dirs=save_to_dirs, context=p)
    return str(saved), None


IGNORED_INFO_KEYS = {"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop", "background",
                     "timestamp", "duration", "progressive", "progression", "icc_profile", "chromaticity",
                     "photoshop"}


def image_data(data: bytes) -> tuple[str | None, None]:
    """The infotext stored in image bytes (A1111's ``(geninfo, None)``), or ``(text, None)`` for plain text."""
    import io

    try:
        text, _ = read_infotext(Image.open(io.BytesIO(data)))
        return text, None
    except Exception:
        pass
    try:
        return data.decode("utf8")[:20000], None
    except UnicodeDecodeError:
        return None, None


def get_next_sequence_number(path: str, basename: str) -> int:
    """The next ``NNNNN`` counter for files in ``path`` (A1111's numbering of saved images)."""
    import os
    import re

    highest = -1
    prefix = f"{basename}-" if basename else ""
    if os.path.isdir(path):
        for name in os.listdir(path):
            if not name.startswith(prefix):
                continue
            match = re.match(r"(\d+)", name[len(prefix):])
            if match:
                highest = max(highest, int(match.group(1)))
    return highest + 1


def save_image_with_geninfo(image: Image.Image, geninfo: str | None, filename: str,
                            extension: str | None = None, existing_pnginfo: dict[str, Any] | None = None,
                            pnginfo_section_name: str = "parameters") -> None:
    """Write ``image`` to ``filename`` with ``geninfo`` embedded (PNG text, JPEG/WebP EXIF), as A1111 does."""
    import os

    from modules.processing.image_store import embed_infotext

    fmt = (extension or os.path.splitext(filename)[1]).lstrip(".").lower() or "png"
    with open(filename, "wb") as file:
        file.write(embed_infotext(image, geninfo, fmt, 80))
