"""Where Easel keeps things. Two roots: the data dir (config, outputs, queue, caches) and the models dir."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout (or installed tree) root: holds configs/, scripts/, extensions/, javascript/, models/."""


def regular_file_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` may be served from ``folder``: a regular file itself (not a symlink, FIFO or device) whose
    real location is inside the real ``folder``, so no link planted in the data dir can expose another file."""
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        return path.resolve(strict=True).is_relative_to(folder.resolve(strict=True))
    except (OSError, RuntimeError):  # missing, unreadable, or a symlink loop above it
        return False


@dataclass(frozen=True)
class DataPaths:
    """Layout of ``--data-dir``."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def queue_db(self) -> Path:
        return self.root / "queue.sqlite3"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def hash_cache(self) -> Path:
        return self.cache_dir / "hashes.json"

    @property
    def styles_file(self) -> Path:
        return self.root / "styles.csv"

    @property
    def wildcards_dir(self) -> Path:
        return self.root / "wildcards"

    @property
    def job_results(self) -> Path:
        return self.root / "jobs"

    def ensure(self) -> None:
        for folder in (self.root, self.outputs, self.cache_dir, self.wildcards_dir, self.job_results):
            folder.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class ModelPaths:
    """Layout of ``--models-dir`` (A1111 folder names, so existing model folders can be pointed at)."""

    root: Path

    @property
    def stable_diffusion(self) -> Path:
        return self.root / "Stable-diffusion"

    @property
    def vae(self) -> Path:
        return self.root / "VAE"

    @property
    def lora(self) -> Path:
        return self.root / "Lora"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def esrgan(self) -> Path:
        return self.root / "ESRGAN"

    @property
    def controlnet(self) -> Path:
        return self.root / "ControlNet"

    @property
    def gfpgan(self) -> Path:
        return self.root / "GFPGAN"

    @property
    def codeformer(self) -> Path:
        return self.root / "Codeformer"

    def ensure(self) -> None:
        for folder in (self.stable_diffusion, self.vae, self.lora, self.embeddings, self.esrgan, self.controlnet,
                       self.gfpgan, self.codeformer):
            folder.mkdir(parents=True, exist_ok=True)
