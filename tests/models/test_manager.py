"""Catalog and model manager: titles and hashes, lookups, switching releases memory, unload/reload."""

from __future__ import annotations

import gc
import hashlib
import weakref
from pathlib import Path

import psutil
import pytest

from modules.core.errors import NoModelError, NotFoundError
from modules.devices import select_device
from modules.models.catalog import CheckpointCatalog, HashCache
from modules.models.manager import ModelManager
from tests.conftest import build_tiny_sd


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("two") / "Stable-diffusion"
    build_tiny_sd(root / "alpha", seed=1)
    build_tiny_sd(root / "beta", seed=2)
    return root


def make_manager(folder: Path, cache_dir: Path) -> ModelManager:
    catalog = CheckpointCatalog(folder, HashCache(cache_dir / "hashes.json"))
    catalog.refresh()
    device = select_device(use_cpu=True, device_id=None, precision="full", no_half=True)
    return ModelManager(catalog, device)


def test_catalog_titles_hashes_and_lookup(two_models: Path, tmp_path: Path) -> None:
    catalog = CheckpointCatalog(two_models, HashCache(tmp_path / "hashes.json"))
    entries = catalog.refresh()
    assert [entry.name for entry in entries] == ["alpha", "beta"]
    assert all(entry.format == "diffusers" and entry.sha256 is None for entry in entries)  # lazy: no hashing
    alpha = catalog.get("alpha")
    digest = catalog.ensure_hash(alpha)
    assert len(digest) == 64 and alpha.title == f"alpha [{digest[:10]}]"
    assert catalog.find(digest[:10]) is alpha and catalog.find(alpha.title) is alpha
    # cached on disk: a new catalog knows the hash without hashing again
    again = CheckpointCatalog(two_models, HashCache(tmp_path / "hashes.json"))
    assert again.refresh()[0].sha256 == digest
    with pytest.raises(NotFoundError, match="unknown checkpoint"):
        catalog.get("gamma")


def test_single_file_hash_is_a1111_sha256(tmp_path: Path) -> None:
    folder = tmp_path / "sd"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"not really weights")
    (folder / "old.ckpt").write_bytes(b"pickle")
    catalog = CheckpointCatalog(folder, HashCache(tmp_path / "h.json"))
    entries = {entry.name: entry for entry in catalog.refresh()}
    assert entries["old.ckpt"].format == "pickle" and entries["model.safetensors"].model_name == "model"
    assert catalog.ensure_hash(entries["model.safetensors"]) == hashlib.sha256(b"not really weights").hexdigest()


def test_no_model_says_where_to_put_one(tmp_path: Path) -> None:
    manager = make_manager(tmp_path / "empty", tmp_path)
    with pytest.raises(NoModelError, match="put a diffusers folder"):
        manager.ensure_loaded(None)


def test_switching_releases_the_previous_model(two_models: Path, tmp_path: Path) -> None:
    manager = make_manager(two_models, tmp_path)
    first = manager.ensure_loaded("alpha")
    unet_ref = weakref.ref(first.pipe.unet)
    del first
    manager.ensure_loaded("beta")
    gc.collect()
    assert unet_ref() is None, "the previous pipeline is still referenced after a switch"


def test_switching_ten_times_keeps_resident_memory_bounded(two_models: Path, tmp_path: Path) -> None:
    manager = make_manager(two_models, tmp_path)
    process = psutil.Process()
    manager.ensure_loaded("alpha")
    manager.ensure_loaded("beta")
    gc.collect()
    baseline = process.memory_info().rss
    for _ in range(10):
        manager.ensure_loaded("alpha")
        manager.ensure_loaded("beta")
    gc.collect()
    growth = process.memory_info().rss - baseline
    assert growth < 40 * 2**20, f"RSS grew by {growth / 2**20:.1f} MiB over 20 switches"


def test_unload_and_reload(two_models: Path, tmp_path: Path) -> None:
    manager = make_manager(two_models, tmp_path)
    manager.ensure_loaded("beta")
    manager.unload()
    assert manager.current is None
    assert manager.reload().info.name == "beta"


def test_loading_hooks_supply_components_and_cannot_break_a_load(two_models: Path, tmp_path: Path) -> None:
    """What a loading hook returns is built into the pipeline (its weights are not read from the folder); a hook
    that raises is logged and the model loads as usual; a model coming back from the RAM cache skips the hooks."""
    from diffusers import UNet2DConditionModel

    seen: list[tuple[str, str | None]] = []
    supplied = UNet2DConditionModel.from_pretrained(str(two_models / "beta"), subfolder="unet")

    def supply(info):  # type: ignore[no-untyped-def]
        seen.append((info.name, info.sha256))
        return {"unet": supplied} if info.name == "alpha" else {}

    def broken(info):  # type: ignore[no-untyped-def]
        raise RuntimeError("hook failed")

    catalog = CheckpointCatalog(two_models, HashCache(tmp_path / "hashes.json"))
    catalog.refresh()
    manager = ModelManager(catalog, select_device(use_cpu=True, device_id=None, precision="full", no_half=True),
                           cache_size=lambda: 1)
    manager.on_model_loading(broken)
    manager.on_model_loading(supply)
    alpha = manager.ensure_loaded("alpha")
    assert alpha.pipe.unet is supplied
    beta = manager.ensure_loaded("beta")
    assert beta.pipe.unet is not supplied and type(beta.pipe.unet) is UNet2DConditionModel
    assert manager.ensure_loaded("alpha") is alpha  # from the RAM cache (of one: beta's retiring keeps it)
    assert [name for name, _ in seen] == ["alpha", "beta"]
    assert all(digest is not None and len(digest) == 64 for _, digest in seen), "hashed before the hooks run"
