"""External VAEs: A1111's ``sd_vae`` option, applied for real.

``models/VAE`` holds VAE weights as single files (``.safetensors``; ``.pt``/``.ckpt`` only with
``--allow-pickle``), in the original LDM layout most shared VAEs use or in diffusers' layout, or as diffusers
folders (``config.json`` + weights). Names are A1111's: the file name with its extension (the folder name for a
folder). A file next to the checkpoints named like a checkpoint plus ``.vae.<ext>`` is listed too, as in A1111.

The setting means what it means in A1111 v1.10:

* ``"Automatic"``: a VAE whose file name starts with the checkpoint's name (``model.vae.safetensors`` beside or
  for ``model.safetensors``), else the checkpoint's own VAE;
* ``"None"``: the checkpoint's own VAE;
* a name: that VAE. An unknown name is a 422 naming ``sd_vae`` (A1111 silently falls back; a client that asked
  for a VAE should learn it was not used).

A chosen VAE is loaded onto the architecture of the loaded model's own VAE (its config) and swapped in for one
run only (:meth:`VaeService.applied`): the checkpoint's VAE is put back when the run ends, so nothing leaks into
the next job. The last loaded VAE is kept, so sweeping jobs do not re-read the file. Only a VAE that was applied
is reported (``run.sd_vae_name``/``run.sd_vae_hash`` feed the infotext's ``VAE``/``VAE hash``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modules.core.errors import UserInputError
from modules.core.hashing import file_sha256

log = logging.getLogger(__name__)

VAE_FILE_SUFFIXES = (".safetensors", ".pt", ".ckpt")
PICKLE_SUFFIXES = (".pt", ".ckpt")
AUTOMATIC = ("Automatic", "auto")
NONE = "None"


@dataclass(frozen=True)
class VaeFile:
    name: str  # A1111's key: file name with extension, or the folder name of a diffusers folder
    path: Path

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def is_pickle(self) -> bool:
        return self.path.suffix in PICKLE_SUFFIXES


def list_vaes(vae_folder: Path, checkpoints_folder: Path | None = None) -> list[VaeFile]:
    """Every VAE Easel can apply, in natural name order (A1111's ``vae_dict``; later duplicates of a name lose)."""
    found: dict[str, VaeFile] = {}
    if vae_folder.is_dir():
        folders = [path for path in sorted(vae_folder.rglob("config.json")) if path.parent != vae_folder]
        for config in folders:  # diffusers folders; the weight files inside them are not VAEs of their own
            found.setdefault(config.parent.name, VaeFile(config.parent.name, config.parent))
        inside = {config.parent for config in folders}
        for path in sorted(vae_folder.rglob("*")):
            if path.is_file() and path.suffix in VAE_FILE_SUFFIXES and not inside.intersection(path.parents):
                found.setdefault(path.name, VaeFile(path.name, path))
    if checkpoints_folder is not None and checkpoints_folder.is_dir():
        for path in sorted(checkpoints_folder.rglob("*.vae.*")):
            if path.is_file() and path.suffix in VAE_FILE_SUFFIXES:
                found.setdefault(path.name, VaeFile(path.name, path))
    return sorted(found.values(), key=lambda vae: vae.name.lower())


def resolve_vae(setting: str | None, checkpoint: Path | None, vaes: list[VaeFile],
                field: str = "sd_vae") -> VaeFile | None:
    """The VAE ``setting`` selects for ``checkpoint`` (None: the checkpoint's own); see the module docstring."""
    if setting is None or setting == NONE or setting == "":
        return None
    if setting in AUTOMATIC:
        if checkpoint is None:
            return None
        stem = checkpoint.name.rsplit(".", 1)[0] if checkpoint.is_file() else checkpoint.name
        return next((vae for vae in vaes if vae.name.startswith(stem)), None)
    exact = next((vae for vae in vaes if vae.name == setting), None)
    if exact is not None:
        return exact
    by_stem = [vae for vae in vaes if vae.name.rsplit(".", 1)[0] == setting or Path(setting).name == vae.name]
    if len(by_stem) == 1:
        return by_stem[0]
    known = ", ".join([*AUTOMATIC[:1], NONE, *(vae.name for vae in vaes)])
    raise UserInputError(field, f"unknown VAE {setting!r}; available: {known} (files in models/VAE)")


class VaeService:
    """Lists, resolves, loads and applies external VAEs for the generation service."""

    def __init__(self, vae_folder: Path, checkpoints_folder: Path | None = None, *, allow_pickle: bool = False):
        self.vae_folder = vae_folder
        self.checkpoints_folder = checkpoints_folder
        self.allow_pickle = allow_pickle
        self._lock = threading.Lock()
        self._cached: tuple[tuple[str, float, str], Any, str] | None = None  # (key, module, short hash)

    def list(self) -> list[VaeFile]:
        return list_vaes(self.vae_folder, self.checkpoints_folder)

    def check(self, setting: str, field: str = "sd_vae") -> None:
        """Refuse (422 naming ``field``) a setting that names no VAE; "Automatic" and "None" always pass."""
        if setting in (*AUTOMATIC, NONE, ""):
            return
        resolve_vae(setting, None, self.list(), field)

    @contextlib.contextmanager
    def applied(self, run: Any, model: Any) -> Iterator[Any]:
        """Swap the run's VAE (``run.opts.sd_vae``) into ``model.pipe`` for the ``with`` block; yields the VAE
        file applied, or None when the checkpoint's own VAE stays. Sets ``run.sd_vae_name``/``sd_vae_hash``."""
        choice = resolve_vae(run.opts.sd_vae, Path(model.info.path), self.list())
        run.sd_vae_name, run.sd_vae_hash = None, None
        pipe = model.pipe
        if choice is None:
            yield None
            return
        own = pipe.vae
        external, short_hash = self._load(choice, own)
        pipe.vae = external
        run.sd_vae_name, run.sd_vae_hash = choice.name, short_hash
        try:
            yield choice
        finally:
            pipe.vae = own

    def _load(self, vae: VaeFile, like: Any) -> tuple[Any, str]:
        stat = vae.path.stat()
        config_key = repr(sorted(dict(like.config).items()))
        key = (str(vae.path), stat.st_mtime, config_key + str(like.dtype) + str(like.device))
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1], self._cached[2]
            module = self._read(vae, like)
            short_hash = (file_sha256(vae.path) if vae.path.is_file() else _folder_hash(vae.path))[:10]
            self._cached = (key, module, short_hash)
            log.info("VAE %s loaded (%s)", vae.name, short_hash)
            return module, short_hash

    def _read(self, vae: VaeFile, like: Any) -> Any:
        import torch

        vae_class = type(like)
        if vae.is_folder:
            module = vae_class.from_pretrained(str(vae.path), torch_dtype=like.dtype)
            return module.to(like.device)
        if vae.is_pickle and not self.allow_pickle:
            raise UserInputError("sd_vae", f"{vae.name} is a pickle file; start Easel with --allow-pickle to load it "
                                           "or use a .safetensors VAE")
        if vae.is_pickle:
            state = torch.load(str(vae.path), map_location="cpu", weights_only=True)
        else:
            from safetensors.torch import load_file

            state = load_file(str(vae.path))
        if isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        state = {key: value for key, value in state.items() if not key.startswith("loss") and
                 key not in ("model_ema.decay", "model_ema.num_updates")}
        module = vae_class.from_config(like.config)
        try:
            if not any(key.startswith(("encoder.down_blocks.", "decoder.up_blocks.")) for key in state):
                from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

                state = convert_ldm_vae_checkpoint(state, dict(like.config))
            module.load_state_dict(state, strict=True)
        except (RuntimeError, KeyError, ValueError, IndexError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserInputError("sd_vae", f"{vae.name} does not fit this model's VAE ({first})") from None
        return module.to(device=like.device, dtype=like.dtype).eval()


def _folder_hash(folder: Path) -> str:
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    return file_sha256(weights[0]) if weights else hashlib.sha256(folder.name.encode()).hexdigest()
