"""What every tab of the UI needs from the services, behind small read-only helpers.

The tabs see this narrow object, not the raw services: choices for dropdowns (checkpoints, samplers, styles,
upscalers), token counting, and the per-browser-session record of the job a tab is waiting on (so Interrupt
and Skip act on *this* user's job). A service the warm-up has not built (or that failed) hides its feature
instead of breaking the page.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from modules.core.paths import REPO_ROOT
from modules.core.settings import Options, Settings
from modules.extensions.script_api import Script
from modules.jobs import JobQueue
from modules.services import Services

log = logging.getLogger(__name__)

DEFAULT_HIRES_UPSCALERS = ("Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (nearest)", "Lanczos",
                           "Nearest", "None")
DEFAULT_EXTRAS_UPSCALERS = ("None", "Lanczos", "Nearest")
PREFERRED_SAMPLERS = ("DPM++ 2M", "Euler a", "Euler")


@dataclass
class UiContext:
    services: Services
    _jobs: dict[tuple[str, str], str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- services --------------------------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def options(self) -> Options:
        return self.services.settings.options

    @property
    def queue(self) -> JobQueue:
        return self.services.queue

    # -- choices ---------------------------------------------------------------------------------------------
    def checkpoint_titles(self, *, refresh: bool = False) -> list[str]:
        catalog = self.services.catalog
        entries = catalog.refresh() if refresh else catalog.entries
        return [entry.title for entry in entries]

    def current_checkpoint_title(self) -> str | None:
        """The option's checkpoint as a dropdown title (the option may hold a name, title or hash)."""
        wanted = self.options.sd_model_checkpoint
        manager = self.services.manager
        if not wanted and manager is not None and manager.current is not None:
            return manager.current.info.title
        if wanted:
            entry = self.services.catalog.find(str(wanted))
            return entry.title if entry is not None else str(wanted)
        titles = self.checkpoint_titles()
        return titles[0] if titles else None

    def native_size(self) -> int:
        """The current checkpoint's training resolution where its diffusers folder says so (the family module's
        ``FolderConfigs.native_size``), else 512, A1111's default: the embedded model draws 64x64 pictures and
        would tile a 512x512 canvas with small shapes."""
        from modules.models.families.base import FolderConfigs, is_diffusers_folder

        title = self.current_checkpoint_title()
        entry = self.services.catalog.find(title) if title else None
        if entry is None or not is_diffusers_folder(Path(entry.path)):
            return 512
        try:
            size = FolderConfigs.read(Path(entry.path)).native_size
        except (OSError, ValueError):
            return 512
        return size if size is not None and 64 <= size <= 2048 and size % 8 == 0 else 512

    def vae_choices(self) -> list[str]:
        from modules.models.vae import list_vaes

        vaes = list_vaes(self.settings.model_paths.vae, self.services.catalog.folder)
        return ["Automatic", "None", *(vae.name for vae in vaes)]

    def sampler_names(self) -> list[str]:
        return [spec.name for spec in self.services.samplers.samplers]

    def default_sampler(self) -> str:
        names = self.sampler_names()
        for name in PREFERRED_SAMPLERS:
            if name in names:
                return name
        return names[0] if names else "Default"

    def schedule_labels(self) -> list[str]:
        return [schedule.label for schedule in self.services.samplers.schedules]

    def hires_upscalers(self) -> list[str]:
        names = self._upscaler_names()
        return list(dict.fromkeys([*DEFAULT_HIRES_UPSCALERS, *names]))

    def extras_upscalers(self) -> list[str]:
        return list(dict.fromkeys([*DEFAULT_EXTRAS_UPSCALERS, *self._upscaler_names()]))

    def _upscaler_names(self) -> list[str]:
        service = self.services.upscalers
        if service is None:
            return []
        try:
            return [str(name) for name in service.names()]
        except Exception:
            log.exception("listing upscalers failed")
            return []

    def face_restorer_names(self) -> list[str]:
        """Installed face restorers (``GFPGAN``, ``CodeFormer``): the ``face_restoration_model`` choices."""
        service = self.services.faces
        if service is None:
            return []
        try:
            return [str(name) for name in service.names()]
        except Exception:
            log.exception("listing face restorers failed")
            return []

    # -- styles ----------------------------------------------------------------------------------------------
    def style_names(self) -> list[str]:
        """Names from the styles service (``styles()`` -> dicts, as ``/sdapi/v1/prompt-styles``)."""
        styles = self.services.styles
        if styles is None:
            return []
        try:
            return [str(item["name"]) for item in styles.styles()]
        except Exception:
            log.exception("listing styles failed")
            return []

    def apply_styles(self, prompt: str, negative: str, names: list[str]) -> tuple[str, str]:
        styles = self.services.styles
        if styles is None or not names:
            return prompt, negative
        new_prompt, new_negative = styles.apply(prompt, negative, names)
        return new_prompt, new_negative

    def save_style(self, name: str, prompt: str, negative: str) -> None:
        """Add or replace a style in ``styles.csv`` through the service's store (saved atomically there)."""
        from modules.processing.styles import PromptStyle

        styles = self.services.styles
        if styles is None:
            raise RuntimeError("no styles service is installed")
        store = styles.reload_if_changed()
        store.set(PromptStyle(name, prompt, negative))
        store.save()

    # -- scripts ---------------------------------------------------------------------------------------------
    def scripts(self, is_img2img: bool) -> list[Script]:
        runner = self.services.scripts
        if runner is None:
            return []
        try:
            return list(runner.scripts(is_img2img))
        except Exception:
            log.exception("listing scripts failed")
            return []

    # -- tokens ----------------------------------------------------------------------------------------------
    def token_count(self, text: str, *, is_positive: bool = True, steps: int = 20,
                    styles: list[str] | None = None) -> tuple[int, int]:
        """(tokens, limit): the limit grows in chunks of 75 as A1111's counter does. A1111's
        ``before_token_counter`` callbacks see the text first and may change what is counted."""
        callbacks = getattr(self.services, "callbacks", None)
        if callbacks is not None and callbacks.has("before_token_counter"):
            from modules.extensions.callbacks import BeforeTokenCounterParams

            params = BeforeTokenCounterParams(text, steps, list(styles or []), is_positive)
            callbacks.call("before_token_counter", params)
            text = params.prompt
        tokenizer = None
        manager = self.services.manager
        if manager is not None and manager.current is not None:
            tokenizer = getattr(manager.current.pipe, "tokenizer", None)  # a diffusers pipeline may lack one
        if tokenizer is not None:
            try:
                count = len(tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"])
            except Exception:
                count = len(text.split())
        else:
            count = len(text.split())
        limit = max(75, ((count + 74) // 75) * 75)
        return count, limit

    # -- per-session jobs ------------------------------------------------------------------------------------
    def remember_job(self, session: str, tab: str, job_id: str | None) -> None:
        with self._lock:
            if job_id is None:
                self._jobs.pop((session, tab), None)
            else:
                self._jobs[(session, tab)] = job_id

    def job_of(self, session: str, tab: str) -> str | None:
        with self._lock:
            return self._jobs.get((session, tab))

    # -- extensions ------------------------------------------------------------------------------------------
    def extensions_root(self) -> Path:
        """The folder extensions were loaded from (``services.extension_roots``; ``extensions/`` by default)."""
        roots = getattr(self.services, "extension_roots", None)
        return Path(roots[0]) if roots else REPO_ROOT / "extensions"
