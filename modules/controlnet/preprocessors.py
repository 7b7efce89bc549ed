"""ControlNet preprocessors ("modules" in sd-webui-controlnet's API): image -> control map.

Each one is a small function on an RGB ``uint8`` array, written here on OpenCV/numpy because controlnet-aux
hard-requires torchvision/timm, which cannot be installed beside this torch build. Only preprocessors that
need no downloaded annotator weights are registered; detectors that need weights (depth, normal, openpose,
HED, ...) are not offered until their weights can be loaded locally, so the module list never shows one that
fails. Names are sd-webui-controlnet's, so API clients can send what they already send; the longer display
names ("invert (from white bg & black line)") are accepted as aliases.

Every preprocessor runs at ``resolution`` pixels on the short side (``processor_res``) and the caller receives
the control map at the exact size it asks for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from modules.core import cancellation
from modules.core.errors import UserInputError
from modules.core.limits import check_pixels

PreprocessFn = Callable[[np.ndarray, float, float], np.ndarray]
DEFAULT_RESOLUTION = 512


@dataclass(frozen=True)
class Slider:
    name: str
    value: float
    min: float
    max: float
    step: float = 1.0


@dataclass(frozen=True)
class Preprocessor:
    name: str
    run: PreprocessFn
    threshold_a: Slider | None = None
    threshold_b: Slider | None = None
    aliases: tuple[str, ...] = ()
    uses_resolution: bool = True
    model_free: bool = False  # sd-webui-controlnet's flag for units that need no ControlNet model (none here)

    def detail(self) -> dict[str, Any]:
        """sd-webui-controlnet's ``module_detail`` entry."""
        sliders: list[dict[str, Any]] = []
        if self.uses_resolution:
            sliders.append({"name": "Preprocessor Resolution", "value": DEFAULT_RESOLUTION, "min": 64, "max": 2048,
                            "step": 8})
        for slider in (self.threshold_a, self.threshold_b):
            if slider is not None:
                sliders.append({"name": slider.name, "value": slider.value, "min": slider.min, "max": slider.max,
                                "step": slider.step})
        return {"model_free": self.model_free, "sliders": sliders}


@dataclass
class PreprocessorRegistry:
    items: dict[str, Preprocessor] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def register(self, preprocessor: Preprocessor) -> None:
        for name in (preprocessor.name, *preprocessor.aliases):
            if name in self.items or name in self.aliases:
                raise ValueError(f"a preprocessor named {name!r} is already registered")
        self.items[preprocessor.name] = preprocessor
        for alias in preprocessor.aliases:
            self.aliases[alias] = preprocessor.name

    def names(self, alias_names: bool = False) -> list[str]:
        if not alias_names:
            return list(self.items)
        return [item.aliases[0] if item.aliases else item.name for item in self.items.values()]

    def get(self, name: str | None, field_name: str = "module") -> Preprocessor:
        key = (name or "none").strip()
        key = self.aliases.get(key, key)
        if key not in self.items:
            raise UserInputError(field_name, f"unknown preprocessor {name!r}; available: {', '.join(self.items)}")
        return self.items[key]


def _value(given: float, slider: Slider | None) -> float:
    """sd-webui-controlnet sends -1 for "use the default"."""
    if slider is None:
        return given
    return slider.value if given is None or given < 0 else given


def run_preprocessor(registry: PreprocessorRegistry, name: str | None, image: Image.Image,
                     size: tuple[int, int] | None = None, resolution: int = -1, threshold_a: float = -1,
                     threshold_b: float = -1, field_name: str = "module", max_pixels: int | None = None,
                     resolution_field: str = "processor_res") -> Image.Image:
    """Preprocess ``image`` into an RGB control map of ``size`` (``(width, height)``; default: the input's).

    With ``max_pixels``, the size the preprocessor would work at (the short side scaled to ``resolution``) is
    checked before any work: a 1x4000 strip at resolution 2048 would otherwise need 2048x8192000 pixels.
    """
    preprocessor = registry.get(name, field_name)
    cancellation.checkpoint()  # one preprocessor run is the unit of work a cancel waits for (inside a job)
    if preprocessor.uses_resolution:
        working = _short_side_size(image.size, resolution if resolution and resolution > 0 else DEFAULT_RESOLUTION)
        if max_pixels is not None:
            check_pixels(resolution_field, *working, max_pixels, "--max-image-pixels", "preprocessor working size")
    rgb = image.convert("RGB")
    size = size or rgb.size
    if preprocessor.uses_resolution:
        rgb = _short_side(rgb, resolution if resolution and resolution > 0 else DEFAULT_RESOLUTION)
    array = np.asarray(rgb)
    result = preprocessor.run(array, _value(threshold_a, preprocessor.threshold_a),
                              _value(threshold_b, preprocessor.threshold_b))
    if result.ndim == 2:
        result = np.repeat(result[..., None], 3, axis=2)
    out = Image.fromarray(np.ascontiguousarray(result.astype(np.uint8)), "RGB")
    if out.size != size:
        out = out.resize(size, Image.Resampling.NEAREST if preprocessor.name in _NEAREST else Image.Resampling.LANCZOS)
    return out


def _short_side_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    scale = resolution / max(1, min(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _short_side(image: Image.Image, resolution: int) -> Image.Image:
    size = _short_side_size(image.size, resolution)
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


# -- the preprocessors ---------------------------------------------------------------------------------------------
def _cv2() -> Any:
    import cv2

    return cv2


def none(image: np.ndarray, a: float, b: float) -> np.ndarray:
    return image


def invert(image: np.ndarray, a: float, b: float) -> np.ndarray:
    """Black lines on white (a sketch) -> white lines on black, what line ControlNets were trained on."""
    return 255 - image


def canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    return _cv2().Canny(image, int(low), int(high))


def binary(image: np.ndarray, threshold: float, b: float) -> np.ndarray:
    """Dark strokes become white on black; threshold 0 picks the level with Otsu's method."""
    cv2 = _cv2()
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if threshold <= 0 or threshold >= 255:
        _, result = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    else:
        _, result = cv2.threshold(gray, int(threshold), 255, cv2.THRESH_BINARY_INV)
    return result


def threshold(image: np.ndarray, level: float, b: float) -> np.ndarray:
    gray = image.astype(np.float32).mean(axis=2)
    return np.where(gray > level, 255, 0).astype(np.uint8)


def lineart_standard(image: np.ndarray, strength: float, b: float) -> np.ndarray:
    """Lines as the darkness of each pixel relative to a blurred copy of its surroundings."""
    cv2 = _cv2()
    pixels = image.astype(np.float32)
    blurred = cv2.GaussianBlur(pixels, (0, 0), 6.0)
    darkness = (blurred - pixels).max(axis=2).clip(0, None)
    positive = darkness[darkness > 8]
    scale = max(float(np.median(positive)) if positive.size else 16.0, 16.0)
    return ((darkness / scale).clip(0, 1) * 255).astype(np.uint8)


def shuffle(image: np.ndarray, a: float, b: float) -> np.ndarray:
    """Content reshuffled by a smooth random warp (a fixed seed, so a request is reproducible)."""
    cv2 = _cv2()
    height, width = image.shape[:2]
    rng = np.random.default_rng(int(a) if a >= 0 else 0)

    def smooth_field(scale: float) -> np.ndarray:
        coarse = rng.random((max(2, height // 64), max(2, width // 64))).astype(np.float32)
        return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) * scale

    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    map_x = (grid_x + smooth_field(width) - width / 2) % width
    map_y = (grid_y + smooth_field(height) - height / 2) % height
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def tile_resample(image: np.ndarray, down_sampling: float, b: float) -> np.ndarray:
    """A softened copy: downsample by ``down_sampling`` and back (the tile model fills in the detail)."""
    cv2 = _cv2()
    factor = max(1.0, float(down_sampling))
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, int(width / factor)), max(1, int(height / factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def color(image: np.ndarray, a: float, b: float) -> np.ndarray:
    """A coarse colour grid: average colour of 64x64 cells (the T2I colour adapter's input)."""
    cv2 = _cv2()
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, width // 64), max(1, height // 64)), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)


def scribble_xdog(image: np.ndarray, level: float, b: float) -> np.ndarray:
    """Scribble lines from an extended difference of Gaussians: fine blur minus coarse blur, thresholded."""
    cv2 = _cv2()
    pixels = image.astype(np.float32)
    fine = cv2.GaussianBlur(pixels, (0, 0), 0.5)
    coarse = cv2.GaussianBlur(pixels, (0, 0), 5.0)
    difference = (coarse - fine).max(axis=2)
    return np.where(difference > level, 255, 0).astype(np.uint8)


def blur_gaussian(image: np.ndarray, sigma: float, b: float) -> np.ndarray:
    return _cv2().GaussianBlur(image, (0, 0), max(0.01, float(sigma)))


def recolor_luminance(image: np.ndarray, gamma: float, b: float) -> np.ndarray:
    """Perceptual lightness only (CIE L*), for recolouring a picture."""
    cv2 = _cv2()
    lightness = cv2.cvtColor(image, cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32) / 255.0
    return (np.power(lightness, max(0.01, float(gamma))) * 255).clip(0, 255).astype(np.uint8)


def recolor_intensity(image: np.ndarray, gamma: float, b: float) -> np.ndarray:
    """Brightness only (HSV value), for recolouring a picture."""
    cv2 = _cv2()
    value = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 2].astype(np.float32) / 255.0
    return (np.power(value, max(0.01, float(gamma))) * 255).clip(0, 255).astype(np.uint8)


_NEAREST = frozenset({"canny", "binary", "threshold", "scribble_xdog", "color", "invert"})


def build_registry() -> PreprocessorRegistry:
    registry = PreprocessorRegistry()
    for item in (
        Preprocessor("none", none, uses_resolution=False),
        Preprocessor("invert", invert, aliases=("invert (from white bg & black line)",)),
        Preprocessor("canny", canny, Slider("Canny Low Threshold", 100, 1, 255),
                     Slider("Canny High Threshold", 200, 1, 255)),
        Preprocessor("binary", binary, Slider("Binary threshold", 0, 0, 255)),
        Preprocessor("threshold", threshold, Slider("Binarization Threshold", 127, 0, 255)),
        Preprocessor("lineart_standard", lineart_standard,
                     aliases=("lineart_standard (from white bg & black line)",)),
        Preprocessor("shuffle", shuffle, Slider("Seed", 0, 0, 2**31 - 1), aliases=("t2ia_shuffle",)),
        Preprocessor("tile_resample", tile_resample, Slider("Down Sampling Rate", 1.0, 1.0, 8.0, 0.01)),
        Preprocessor("color", color, aliases=("t2ia_color_grid",)),
        Preprocessor("scribble_xdog", scribble_xdog, Slider("XDoG Threshold", 32, 1, 64)),
        Preprocessor("blur_gaussian", blur_gaussian, Slider("Sigma", 9.0, 0.01, 64.0, 0.01)),
        Preprocessor("recolor_luminance", recolor_luminance, Slider("Gamma Correction", 1.0, 0.1, 2.0, 0.001)),
        Preprocessor("recolor_intensity", recolor_intensity, Slider("Gamma Correction", 1.0, 0.1, 2.0, 0.001)),
        # IP-Adapter units: the picture goes unchanged to the adapter's own CLIP vision encoder, which is part
        # of the IP-Adapter model folder; the names are sd-webui-controlnet's encoder preprocessors.
        Preprocessor("ip-adapter-auto", none, uses_resolution=False,
                     aliases=("ip-adapter_clip_sd15", "ip-adapter_clip_h", "ip-adapter_clip_sdxl",
                              "ip-adapter_clip_g", "ip-adapter_clip_sdxl_plus_vith")),
    ):
        registry.register(item)
    return registry
