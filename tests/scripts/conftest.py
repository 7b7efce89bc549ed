"""A real Easel (services, warm-up, tiny SD model) with the built-in scripts of ``scripts/`` loaded."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="package")
def easel(tmp_path_factory: pytest.TempPathFactory, tiny_sd_path: Path) -> Iterator[Any]:
    from modules.core.paths import REPO_ROOT
    from modules.core.settings import CmdFlags, Options, Settings
    from webui import build_services, warm_up

    root = tmp_path_factory.mktemp("easel_scripts")
    shutil.copytree(tiny_sd_path, root / "models" / "Stable-diffusion" / "tiny-sd")
    flags = CmdFlags(data_dir=root / "data", models_dir=root / "models", use_cpu=True, precision="full",
                     no_half=True)
    services = build_services(Settings(flags, Options(sd_model_checkpoint="tiny-sd")))
    services.script_dirs = [REPO_ROOT / "scripts"]
    services.extension_roots = [root / "extensions"]
    warm_up(services, load_model=False)
    assert services.startup_error is None, services.startup_error
    yield services
    services.job_store.close()


@pytest.fixture(scope="package")
def generate(easel: Any) -> Any:
    """``generate(kind, **fields)`` through the real generation service (script_name / script_args included)."""
    from modules.processing.params import Img2ImgParams, Txt2ImgParams

    def run(kind: str = "txt2img", **fields: Any) -> Any:
        defaults: dict[str, Any] = {"steps": 2, "width": 64, "height": 64, "seed": 21, "sampler_name": "Euler"}
        params_cls = Img2ImgParams if kind == "img2img" else Txt2ImgParams
        return easel.generation.generate(params_cls(**{**defaults, **fields}))

    return run
