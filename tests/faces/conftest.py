"""A random-weight GFPGAN saved as safetensors (spandrel's architecture class at the size its loader expects:
spandrel reads no GFPGAN hyper-parameters from the state dict), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session")
def single_thread_torch() -> object:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is faster than two fighting
    yield None
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def gfpgan_models_dir(tmp_path_factory: pytest.TempPathFactory, single_thread_torch: object) -> Path:
    """A models dir whose GFPGAN folder holds ``random-gfpgan.safetensors``."""
    from safetensors.torch import save_file

    from modules.upscalers.models import import_spandrel

    import_spandrel()
    from spandrel.architectures.GFPGAN import GFPGAN

    root = tmp_path_factory.mktemp("face-models")
    (root / "GFPGAN").mkdir()
    (root / "Codeformer").mkdir()
    torch.manual_seed(0)
    save_file(GFPGAN().state_dict(), str(root / "GFPGAN" / "random-gfpgan.safetensors"))
    return root
