"""IP-Adapters: an image prompt through diffusers' ``load_ip_adapter``, undone after the job.

diffusers patches the pipeline's UNet in place (IP attention processors on every cross-attention, an image
projection as ``encoder_hid_proj``), so the patch lives for one run only: :class:`IPAdapterPatch` records what
it replaces and :meth:`IPAdapterPatch.restore` puts back the very same objects (processors included, which
``unload_ip_adapter`` would replace with fresh defaults), so the next job runs the untouched UNet.

Each IP-Adapter brings its own CLIP vision encoder folder (``image_encoder`` beside its weights); the image
embeddings are computed here with that encoder, the way diffusers' pipelines do it (projected embeddings for
plain adapters, the penultimate hidden states for "plus" ones; zeros/zero-image for the unconditional copies),
so units whose adapters use different encoders can run together.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from modules.controlnet.models import IMAGE_ENCODER_FOLDER, ControlNetFile, family_label
from modules.core.errors import UnsupportedError, UserInputError

log = logging.getLogger(__name__)

PATCHED_MODULES = ("image_encoder", "feature_extractor")


def check_ip_adapter_fits(file: ControlNetFile, unet: Any, field: str) -> None:
    """Compare the adapter's per-attention key/value projections with the UNet's cross-attention layers."""
    from safetensors import safe_open

    if not (file.image_encoder / "config.json").is_file():
        raise UserInputError(field, f"IP-Adapter {file.name!r} needs its CLIP vision encoder in "
                                    f"{file.image_encoder} ({IMAGE_ENCODER_FOLDER}/config.json + weights)")
    with safe_open(str(file.path), framework="pt") as handle:
        keys = list(handle.keys())
        shapes = [handle.get_slice(key).get_shape() for key in keys if key.endswith(".to_k_ip.weight")]
    if any("lora" in key for key in keys):
        raise UserInputError(field, f"IP-Adapter {file.name!r} is a FaceID adapter (it needs face embeddings), "
                                    "which Easel does not support")
    cross_layers = [name for name in unet.attn_processors if name.endswith("attn2.processor")]
    cross = unet.config.cross_attention_dim
    if len(shapes) != len(cross_layers) or any(shape[1] != cross for shape in shapes):
        dims = sorted({shape[1] for shape in shapes})
        raise UserInputError(field, f"IP-Adapter {file.name!r} ({len(shapes)} attention layers of text width "
                                    f"{dims}) does not fit the loaded checkpoint, a {family_label(unet.config)} model "
                                    f"with {len(cross_layers)} cross-attention layers; choose an adapter of its "
                                    "family")


class IPAdapterPatch:
    """``load_ip_adapter`` for a list of adapters on one pipeline, reversible."""

    def __init__(self, pipe: Any, files: list[ControlNetFile]) -> None:
        unet = pipe.unet
        if getattr(unet, "backend_name", None) is not None:
            raise UnsupportedError("IP-Adapter patches the PyTorch UNet's attention; run the plain torch backend "
                                   "(backend torch, torch_compile off) to use it")
        if not hasattr(pipe, "load_ip_adapter"):
            raise UnsupportedError(f"{type(pipe).__name__} does not take IP-Adapters")
        self.pipe = pipe
        self._processors = dict(unet.attn_processors)
        self._projection = unet.encoder_hid_proj
        self._projection_type = unet.config.encoder_hid_dim_type
        self._modules = {name: getattr(pipe, name) for name in PATCHED_MODULES if hasattr(pipe, name)}
        try:
            pipe.load_ip_adapter([str(file.path.parent) for file in files], subfolder=[""] * len(files),
                                 weight_name=[file.path.name for file in files], image_encoder_folder=None,
                                 local_files_only=True)
        except Exception:
            self.restore()
            raise
        from diffusers.models.embeddings import ImageProjection

        self.plus = [not isinstance(layer, ImageProjection) for layer in unet.encoder_hid_proj.image_projection_layers]

    def set_scales(self, scales: list[float]) -> None:
        self.pipe.set_ip_adapter_scale(list(scales))

    def restore(self) -> None:
        unet = self.pipe.unet
        unet.set_attn_processor(dict(self._processors))
        unet.encoder_hid_proj = self._projection
        unet.config.encoder_hid_dim_type = self._projection_type  # diffusers sets the attribute the same way
        for name, module in self._modules.items():
            self.pipe.register_modules(**{name: module})


@dataclass
class ImageEncoder:
    model: Any  # transformers CLIPVisionModelWithProjection
    processor: Any  # CLIP image processor

    def embeds(self, image: Image.Image, plus: bool, device: torch.device,
               dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) embeddings of one image, each with a leading batch axis of 1."""
        model = self.model.to(device, dtype)
        pixels = self.processor(image.convert("RGB"), return_tensors="pt").pixel_values.to(device, dtype)
        if plus:
            hidden = model(pixels, output_hidden_states=True).hidden_states[-2]
            empty = model(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
            return hidden, empty
        projected = model(pixels).image_embeds
        return projected, torch.zeros_like(projected)


class ImageEncoderCache:
    """The CLIP vision encoders of recently used IP-Adapters (they are shared by every adapter of a folder)."""

    def __init__(self, size: int = 1) -> None:
        self.size = max(1, size)
        self._loaded: OrderedDict[Path, ImageEncoder] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, folder: Path) -> ImageEncoder:
        with self._lock:
            encoder = self._loaded.get(folder)
            if encoder is None:
                encoder = load_image_encoder(folder)
                self._loaded[folder] = encoder
                while len(self._loaded) > self.size:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(folder)
            return encoder

    def clear(self) -> None:
        with self._lock:
            self._loaded.clear()


def load_image_encoder(folder: Path) -> ImageEncoder:
    from transformers import CLIPVisionModelWithProjection

    model = CLIPVisionModelWithProjection.from_pretrained(str(folder), local_files_only=True).eval()
    model.requires_grad_(False)
    return ImageEncoder(model, _image_processor(folder, model.config.image_size))


def _image_processor(folder: Path, size: int) -> Any:
    """The folder's own preprocessing when it has one, else CLIP's at the encoder's input size (what diffusers'
    ``load_ip_adapter`` builds). The PIL variant needs no torchvision, which this install cannot have."""
    import transformers

    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    if (folder / "preprocessor_config.json").is_file():
        return cls.from_pretrained(str(folder), local_files_only=True)
    return cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
