"""The model manager: load, switch, unload and reload checkpoints; one loaded model per device by default.

Loading goes through the family registry (offline, configs shipped in ``configs/``). Switching drops every
reference to the previous pipeline, runs the garbage collector and empties the device cache, so memory is
actually released (A1111's RAM-grows-on-every-switch complaint). ``sd_checkpoint_cache`` keeps up to N
previous pipelines in CPU RAM for fast switching back. A switch inside one run (a hires pass on
``hr_checkpoint_name``, and back) *parks* the replaced pipeline in CPU RAM whatever the cache size, so the run
gets the same object back, with its per-run patches (LoRA, tiling); :meth:`trim_cache` drops what the cache
size does not allow once the run ends.

Only the job worker switches models during generation; the start-up warm-up loads the default model through
:meth:`ensure_loaded` under the same lock, so requests simply wait for it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.core.errors import NoModelError
from modules.devices.select import Device
from modules.models.catalog import CheckpointCatalog, CheckpointInfo

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A pipeline together with what Easel knows about it."""

    info: CheckpointInfo
    pipe: Any  # diffusers.DiffusionPipeline (typed loosely: diffusers is imported lazily)
    family: Any  # modules.models.families.ModelFamily
    default_size: tuple[int, int]
    load_seconds: float

    @property
    def hash(self) -> str | None:
        return self.info.shorthash


class ModelManager:
    def __init__(self, catalog: CheckpointCatalog, device: Device, *, allow_pickle: bool = False,
                 cache_size: Callable[[], int] = lambda: 0) -> None:
        self.catalog = catalog
        self.device = device
        self.allow_pickle = allow_pickle
        self._cache_size = cache_size
        self._lock = threading.RLock()
        self._current: LoadedModel | None = None
        self._cpu_cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._on_loaded: list[Callable[[LoadedModel], None]] = []
        self._on_loading: list[Callable[[CheckpointInfo], dict[str, Any]]] = []
        self._last_info: CheckpointInfo | None = None
        self.loading: str | None = None
        self.last_error: str | None = None

    # -- state -------------------------------------------------------------------------------------------
    @property
    def current(self) -> LoadedModel | None:
        return self._current

    def on_model_loaded(self, callback: Callable[[LoadedModel], None]) -> None:
        self._on_loaded.append(callback)

    def on_model_loading(self, callback: Callable[[CheckpointInfo], dict[str, Any]]) -> None:
        """``callback(info)`` runs before a checkpoint is read from disk and returns components already built for
        it (e.g. a UNet loaded quantized); the pipeline is then loaded around them, so the replaced components'
        original weights are never loaded. Not called for a model coming back from the RAM cache."""
        self._on_loading.append(callback)

    def no_model_message(self) -> str:
        return (f"no model found: put a diffusers folder or a .safetensors checkpoint in {self.catalog.folder} "
                "(or pass --ckpt PATH) and refresh the checkpoint list")

    # -- loading -----------------------------------------------------------------------------------------
    def resolve(self, query: str | None) -> CheckpointInfo:
        """The checkpoint for ``query`` (title/name/hash), else the current one, else the first in the catalog."""
        if query:
            path = Path(query)
            if path.exists() and self.catalog.find(query) is None:
                return CheckpointInfo(path.resolve(), path.name, "diffusers" if path.is_dir() else
                                      ("pickle" if path.suffix in (".ckpt", ".pt") else "safetensors"), 0)
            return self.catalog.get(query)
        if self._current is not None:
            return self._current.info
        if self._last_info is not None and self._last_info.path.exists():
            return self._last_info
        entries = self.catalog.entries or self.catalog.refresh()
        if not entries:
            raise NoModelError(self.no_model_message())
        preferred = [entry for entry in entries if entry.name.startswith("easel-shapes")]
        return (preferred or entries)[0]

    def ensure_loaded(self, query: str | None = None, *, park_current: bool = False) -> LoadedModel:
        """Load ``query`` unless it is already the current model; returns the loaded model. With ``park_current``
        the model it replaces stays in CPU RAM beyond ``sd_checkpoint_cache`` until :meth:`trim_cache`."""
        with self._lock:
            info = self.resolve(query)
            if self._current is not None and self._current.info.path == info.path:
                return self._current
            return self._switch_to(info, park_current)

    def trim_cache(self) -> None:
        """Drop the CPU-cached pipelines beyond ``sd_checkpoint_cache`` (oldest first), e.g. parked ones."""
        with self._lock:
            if self._trim(self._cache_size()):
                self.release_memory()

    def _switch_to(self, info: CheckpointInfo, park_previous: bool = False) -> LoadedModel:
        from modules.models import families

        self.loading = info.title
        try:
            previous = self._current
            self._current = None
            # taken out before the previous model is retired, whose trim would otherwise evict it
            cached = self._cpu_cache.pop(str(info.path), None)
            if previous is not None:
                self._retire(previous, park_previous)
            if cached is not None:
                cached.pipe.to(self.device.device)
                loaded = cached
            else:
                started = time.perf_counter()
                family = families.detect(info.path, allow_pickle=self.allow_pickle)
                self.catalog.ensure_hash(info)  # before the loading hooks: caches of derived weights key on it
                components: dict[str, Any] = {}
                for hook in self._on_loading:
                    try:
                        components.update(hook(info))
                    except Exception:  # a hook must not break model loading: the component loads as usual
                        log.exception("on_model_loading callback %r failed", hook)
                pipe = family.load(info.path, torch_dtype=self.device.dtype, allow_pickle=self.allow_pickle,
                                   **components)
                pipe.to(self.device.device)
                pipe.set_progress_bar_config(disable=True)
                info.family = family.name
                loaded = LoadedModel(info, pipe, family, family.default_size_for(info.path),
                                     time.perf_counter() - started)
                log.info("loaded %s (%s) in %.1fs", info.title, family.name, loaded.load_seconds)
            self._current = loaded
            self._last_info = info
            self.last_error = None
        except Exception as exc:
            self.last_error = str(exc)
            raise
        finally:
            self.loading = None
        for callback in self._on_loaded:
            try:
                callback(loaded)
            except Exception:  # an extension's callback must not break model loading
                log.exception("on_model_loaded callback %r failed", callback)
        return loaded

    def _retire(self, model: LoadedModel, park: bool = False) -> None:
        keep = self._cache_size()
        if keep > 0 or park:
            model.pipe.to("cpu")
            self._cpu_cache[str(model.info.path)] = model
            if not park:
                self._trim(keep)
        del model
        self.release_memory()

    def _trim(self, keep: int) -> bool:
        trimmed = False
        while len(self._cpu_cache) > keep:
            self._cpu_cache.popitem(last=False)
            trimmed = True
        return trimmed

    def release_memory(self) -> None:
        gc.collect()
        self.device.empty_cache()

    def unload(self) -> None:
        """Drop the current model and every cached one (``/sdapi/v1/unload-checkpoint``)."""
        with self._lock:
            self._current = None
            self._cpu_cache.clear()
            self.release_memory()

    def reload(self) -> LoadedModel:
        """Load the last used (or default) checkpoint again (``/sdapi/v1/reload-checkpoint``)."""
        with self._lock:
            return self.ensure_loaded(None)
