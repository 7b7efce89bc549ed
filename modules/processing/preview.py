"""Cheap live previews of the latents while a job runs.

Every ``show_progress_every_n_steps`` steps (when ``live_previews_enable``) the first image of the batch is
turned into a small RGB picture by a fixed linear map from the 4 latent channels to RGB - the approximation A1111
calls "Approx cheap" (a few thousand multiply-adds, no VAE). The coefficients are the widely published ones for
SD-family latents; for other latent spaces the picture is still a faithful sketch of where colours are forming.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from modules.core.settings import Settings

# Rows: latent channels 0..3; columns: R, G, B.
SD_LATENT_RGB = np.array([
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
], dtype=np.float32)


def latents_to_rgb(latents: Any) -> Image.Image:
    """Linear latent->RGB approximation of the first latent of a batch."""
    array = latents[0].detach().float().cpu().numpy()  # (4, h, w)
    channels = min(array.shape[0], SD_LATENT_RGB.shape[0])
    rgb = np.einsum("chw,cr->hwr", array[:channels], SD_LATENT_RGB[:channels])
    rgb = ((rgb + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb).resize((rgb.shape[1] * 8, rgb.shape[0] * 8), Image.Resampling.NEAREST)


class PreviewMaker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def maybe(self, step: int, total: int, latents: Any) -> Image.Image | None:
        options = self.settings.options
        every = options.show_progress_every_n_steps
        if not options.live_previews_enable or every <= 0:
            return None
        if step % every and step != total:
            return None
        return latents_to_rgb(latents)
