"""A1111 internals that have no meaning on Easel's diffusers core, refused with one clear error.

Extensions built on A1111's model internals (``ldm``/``sgm`` model code, ``modules.sd_hijack*`` text-encoder
and attention hijacks, the k-diffusion sampler wrappers...) patch objects Easel does not have. Importing one
of those names raises :class:`IncompatibleSurfaceError` (an ``ImportError``, so an extension that guards the
import with ``try/except ImportError`` keeps working) that names the extension and the missing surface; the
scripts service then lists that extension as incompatible, with this reason, in the Extensions tab and in
``/internal/extensions``.

Top-level packages (``ldm``, ``sgm``, ``k_diffusion``...) are refused only when nothing installed provides
them; ``modules.*`` internals are always refused (they would otherwise be "not found" with no explanation).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import inspect
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

INTERNAL_MODULES: dict[str, str] = {
    "modules.sd_hijack": "A1111's model hijack of the ldm text encoder and UNet",
    "modules.sd_samplers_kdiffusion": "A1111's k-diffusion sampler wrappers",
    "modules.sd_samplers_cfg_denoiser": "A1111's k-diffusion CFG denoiser",
    "modules.sd_samplers_timesteps": "A1111's DDIM/PLMS timestep samplers",
    "modules.sd_samplers_compvis": "A1111's CompVis samplers",
    "modules.sd_samplers_common": "A1111's sampler internals",
    "modules.sd_samplers_extra": "A1111's extra k-diffusion samplers",
    "modules.sd_unet": "A1111's UNet replacement hooks",
    "modules.sd_models_config": "A1111's ldm model configs",
    "modules.sd_models_xl": "A1111's sgm SDXL model code",
    "modules.sd_models_types": "A1111's ldm model types",
    "modules.sd_disable_initialization": "A1111's ldm model construction",
    "modules.sd_emphasis": "A1111's ldm emphasis implementation",
    "modules.sd_vae_approx": "A1111's approximate VAE decoders",
    "modules.sd_vae_taesd": "A1111's TAESD decoder",
    "modules.textual_inversion": "A1111's textual-inversion training",
    "modules.hypernetworks": "A1111's hypernetworks",
    "modules.xlmr": "A1111's XLM-R text encoder",
    "modules.xlmr_m18": "A1111's XLM-R text encoder",
    "modules.rng_philox": "A1111's Philox random number generator",
    "modules.torch_utils": "A1111's torch model helpers",
    "modules.mac_specific": "A1111's Mac-specific torch patches",
    "modules.dat_model": "A1111's DAT upscaler",
    "modules.esrgan_model": "A1111's ESRGAN upscaler",
    "modules.upscaler": "A1111's upscaler base classes",
    "modules.upscaler_utils": "A1111's upscaler tiling",
    "modules.modelloader": "A1111's model downloader",
    "modules.ui_extra_networks": "A1111's Extra Networks card pages (Easel lists LoRA, embeddings and checkpoints "
                                 "through the API and the Models tab, without card pages)",
    "modules.ui_extra_networks_user_metadata": "A1111's Extra Networks card metadata editor",
    "modules.extra_networks_hypernet": "A1111's hypernetwork extra network",
    "modules.interrogate": "A1111's CLIP interrogator",
    "modules.deepbooru": "A1111's DeepBooru interrogator",
    "modules_forge": "the Forge fork's internals",
}
EXTERNAL_PACKAGES: dict[str, str] = {
    "ldm": "the original Stable Diffusion (ldm) model code",
    "sgm": "Stability AI's generative-models (sgm) code",
    "k_diffusion": "the k-diffusion sampler package A1111 vendors",
    "backend": "the Forge fork's backend",
}


class IncompatibleSurfaceError(ImportError):
    """An extension asked for an A1111 internal that Easel's diffusers core does not have."""

    def __init__(self, module: str, surface: str, extension: str | None) -> None:
        who = f"extension {extension!r}" if extension else "an extension"
        super().__init__(f"{who} needs {module} ({surface}), which does not exist in Easel: Easel runs diffusers "
                         f"pipelines, not A1111's model internals; this extension cannot run here", name=module)
        self.module = module
        self.surface = surface
        self.extension = extension


@dataclass
class _Guard(importlib.abc.MetaPathFinder):
    extension_roots: list[Path] = field(default_factory=list)
    refused: dict[str, list[str]] = field(default_factory=dict)  # extension -> modules it asked for
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        surface = _surface(fullname)
        if surface is None:
            return None
        if not fullname.startswith("modules") and _provided_elsewhere(fullname, self):
            return None
        extension = self.importing_extension()
        with self._lock:
            listed = self.refused.setdefault(extension or "unknown", [])
            if fullname not in listed:
                listed.append(fullname)
        raise IncompatibleSurfaceError(fullname, surface, extension)

    def importing_extension(self) -> str | None:
        from modules.extensions import compat

        owner = compat.callbacks().loading_owner()
        if owner is not None:
            return owner
        for frame in inspect.stack()[2:]:
            owner = self._extension_of(Path(frame.filename))
            if owner is not None:
                return owner
        return None

    def _extension_of(self, path: Path) -> str | None:
        for root in self.extension_roots:
            try:
                relative = path.resolve().relative_to(root.resolve())
            except (ValueError, OSError):
                continue
            if relative.parts:
                return relative.parts[0]
        return None


def _surface(fullname: str) -> str | None:
    for name, surface in (*INTERNAL_MODULES.items(), *EXTERNAL_PACKAGES.items()):
        if fullname == name or fullname.startswith(name + ".") or (
                name == "modules.sd_hijack" and fullname.startswith("modules.sd_hijack")):
            return surface
    return None


def _provided_elsewhere(fullname: str, guard: _Guard) -> bool:
    top = fullname.split(".")[0]
    for finder in sys.meta_path:
        if finder is guard or not hasattr(finder, "find_spec"):
            continue
        try:
            if finder.find_spec(top, None) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


_GUARD = _Guard()


def install_guard(extension_roots: Sequence[Path] = ()) -> _Guard:
    """Put the guard first on ``sys.meta_path`` (once) and tell it where extensions live."""
    for root in extension_roots:
        if root not in _GUARD.extension_roots:
            _GUARD.extension_roots.append(root)
    if _GUARD not in sys.meta_path:
        sys.meta_path.insert(0, _GUARD)
    return _GUARD


def guard() -> _Guard:
    return _GUARD


def incompatibility(exc: BaseException | None) -> IncompatibleSurfaceError | None:
    """The :class:`IncompatibleSurfaceError` behind ``exc`` (itself, its cause or context), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, IncompatibleSurfaceError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
