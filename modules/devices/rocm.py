"""AMD ROCm: a HIP build of torch exposes AMD GPUs through the ``torch.cuda`` API."""

from __future__ import annotations

import torch

from modules.devices.cuda import TorchCudaApi
from modules.devices.registry import register_backend


@register_backend
class RocmBackend(TorchCudaApi):
    name = "rocm"

    @classmethod
    def is_available(cls) -> bool:
        return torch.version.hip is not None and torch.cuda.is_available()
