"""Upscalers: "None"/"Lanczos"/"Nearest", ESRGAN-family models from ``models/ESRGAN``, and hires latent modes.

The composition root (``webui.wire_processing_core``) builds the :class:`~modules.upscalers.service.UpscalerService`
and hands it to hires fix and the extras job.
"""
