"""Per-run providers of extra UNet inputs (ControlNet residuals), composed for one denoising pass.

A provider is attached to a run by whatever feature needs it (``run.unet_kwargs_providers``; ControlNet's own
slot ``run.control_provider``, whose patches are undone when the run ends) and is asked,
once per denoising pass (the first pass and a hires second pass), for a callback the engine calls at every
step: ``callback(step_index, latent_input, embeds, added_cond_kwargs) -> dict`` merged into the UNet call
(SDXL-type ControlNets need the same ``added_cond_kwargs`` as the UNet; a returned ``added_cond_kwargs`` replaces
the UNet's, which is how IP-Adapter image embeddings get in). Several providers' residuals are summed, which is
also how diffusers' multi-ControlNet combines them.
"""

from __future__ import annotations

from typing import Any

import torch

from modules.processing.run import DenoisePass, ProcessingRun, UnetKwargs, UnetKwargsProvider


def unet_kwargs_for(run: ProcessingRun, denoise_pass: DenoisePass) -> UnetKwargs | None:
    providers: list[UnetKwargsProvider] = list(run.unet_kwargs_providers)
    if run.control_provider is not None:
        providers.append(run.control_provider)
    callbacks = [callback for provider in providers if (callback := provider(denoise_pass)) is not None]
    if not callbacks:
        return None
    if len(callbacks) == 1:
        return callbacks[0]

    def combined(step: int, latent_input: torch.Tensor, embeds: torch.Tensor,
                 added: dict[str, Any] | None) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for callback in callbacks:
            for key, value in callback(step, latent_input, embeds, added).items():
                merged[key] = value if key not in merged else add_residuals(merged[key], value)
        return merged

    return combined


def add_residuals(left: Any, right: Any) -> Any:
    if isinstance(left, dict):  # added_cond_kwargs: each provider adds its own keys
        return {**left, **right}
    if isinstance(left, (tuple, list)):
        return type(left)(a + b for a, b in zip(left, right, strict=True))
    return left + right
