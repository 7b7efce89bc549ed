"""The options registry of drop-in extensions (A1111's ``shared.opts.add_option`` / ``OptionInfo``).

Where things live, for every reader (the Settings page, ``/sdapi/v1/options``, ``shared.opts``):

* **Values** stay in the one typed settings object: ``services.settings.options`` (:class:`~modules.core.
  settings.Options`, which keeps keys it does not declare as extra fields). Registering an option whose key is
  not stored yet stores its default (unsaved until the next save, as A1111 writes every option to
  ``config.json``), so ``GET /sdapi/v1/options`` lists it and ``shared.opts.<key>`` reads it.
* **Descriptions** (label, section, UI component and its arguments, ``onchange``, ``restrict_api``...) are the
  :class:`ExtensionOptions` below, reachable as ``compat.options()`` and, for extension code, as
  ``shared.opts.data_labels``. ``infos()`` lists them in registration order; ``sections()`` groups them by
  A1111's ``section`` tuple ``(id, title)`` (``options_section``), the grouping A1111's Settings page shows.
* **A1111's own option keys** (:data:`modules.core.a1111_options.A1111_OPTION_DEFAULTS`, which the settings
  model already fills with A1111 v1.10's defaults) are described here too, so ``shared.opts.data_labels`` and
  ``opts.get_default`` know them; those Easel's settings model does not declare as fields are type-checked like
  extension options.

Writes from the API and from ``shared.opts.set`` are checked against the registered default's type (a 422 that
names the key) and run the option's ``onchange`` callbacks after the value is stored. As in A1111, an API write
(``/sdapi/v1/options``, ``shared.opts.set(..., is_api=True)``) never changes an option registered with
``restrict_api=True``: :meth:`ExtensionOptions.api_ignored` names the keys left out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modules.core.a1111_options import A1111_OPTION_DEFAULTS
from modules.core.errors import UserInputError

log = logging.getLogger(__name__)

A1111_SECTION = ("a1111", "A1111 compatibility (no effect in Easel)")

@dataclass
class OptionChange:
    key: str
    before: Any
    after: Any


@dataclass
class ExtensionOptions:
    """Options registered through A1111's API, in registration order, with their ``onchange`` callbacks.

    ``settings`` is the composition root's :class:`~modules.core.settings.Settings`; values live there.
    """

    settings: Any
    _infos: dict[str, Any] = field(default_factory=dict)  # key -> shared.OptionInfo
    _onchange: dict[str, list[Callable[[], None]]] = field(default_factory=dict)

    # -- registration ----------------------------------------------------------------------------------------
    def register(self, key: str, info: Any) -> None:
        """``shared.opts.add_option``: describe ``key``; store its default when no value is stored yet."""
        self._infos[key] = info
        if not getattr(info, "do_not_save", False) and key not in self.settings.options.model_dump():
            try:
                self.settings.update_options({key: info.default}, save=False)
            except UserInputError:  # a None default of an unknown key: nothing to store, reads give the default
                pass
        onchange = getattr(info, "onchange", None)
        if onchange is not None and onchange not in self._onchange.setdefault(key, []):
            self._onchange[key].append(onchange)  # after storing the default: registering is not a change

    def register_a1111_defaults(self, option_info: Callable[..., Any]) -> None:
        """Describe the A1111 option keys Easel's settings model does not declare as fields (their values are
        stored already; any that are not get their A1111 default)."""
        declared = set(type(self.settings.options).model_fields)
        stored = self.settings.options.model_dump()
        missing = {}
        for key, default in A1111_OPTION_DEFAULTS.items():
            if key not in declared and key not in self._infos:
                self._infos[key] = option_info(default, key.replace("_", " "), section=A1111_SECTION)
                if key not in stored:
                    missing[key] = default
        if missing:  # one validation for all of them, not one per key
            self.settings.update_options(missing, save=False)

    def add_onchange(self, key: str, callback: Callable[[], None]) -> None:
        self._onchange.setdefault(key, []).append(callback)

    # -- reading ---------------------------------------------------------------------------------------------
    def info(self, key: str) -> Any | None:
        return self._infos.get(key)

    def infos(self) -> dict[str, Any]:
        return dict(self._infos)

    def sections(self) -> dict[tuple[Any, ...], list[str]]:
        """Keys grouped by A1111 ``section`` (``(id, title)``; ``(None, "Other")`` when none was given)."""
        grouped: dict[tuple[Any, ...], list[str]] = {}
        for key, info in self._infos.items():
            section = info.section if isinstance(info.section, tuple) else (None, str(info.section or "Other"))
            grouped.setdefault(section, []).append(key)
        return grouped

    def default(self, key: str) -> Any:
        info = self._infos.get(key)
        if info is not None:
            return info.default
        field_info = type(self.settings.options).model_fields.get(key)
        return field_info.get_default(call_default_factory=True) if field_info is not None else None

    # -- writing ---------------------------------------------------------------------------------------------
    def check(self, changes: Mapping[str, Any], *, is_api: bool = False) -> None:
        """Refuse values of the wrong type for registered keys (422 naming the key); Easel's own keys are
        validated by the settings model itself."""
        declared = type(self.settings.options).model_fields
        for key, value in changes.items():
            info = self._infos.get(key)
            if info is None or key in declared:
                continue
            expected = _type_name(info.default)
            if expected is not None and not _same_type(value, info.default):
                raise UserInputError(key, f"must be {expected} (got {type(value).__name__})")

    def api_ignored(self, changes: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
        """The keys of an API write that A1111's ``Options.set(key, value, is_api=True)`` leaves alone: options
        registered with ``restrict_api=True`` (or ``do_not_save``) whose value would change. A1111 skips them
        without an error and stores the request's other keys; writing the current value is not a change."""
        ignored = []
        for key, value in changes.items():
            info = self._infos.get(key)
            if info is None or current.get(key) == value:
                continue
            if getattr(info, "restrict_api", False) or getattr(info, "do_not_save", False):
                ignored.append(key)
        return ignored

    def changed(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> list[OptionChange]:
        """Run ``onchange`` callbacks of every key whose value changed; each call isolated and logged."""
        changes = [OptionChange(key, before.get(key), after.get(key)) for key in self._onchange
                   if before.get(key) != after.get(key)]
        for change in changes:
            for callback in list(self._onchange.get(change.key, ())):
                try:
                    callback()
                except Exception:
                    log.exception("onchange callback of option %s failed", change.key)
        return changes


def _type_name(default: Any) -> str | None:
    if default is None:
        return None
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, (int, float)):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (list, tuple)):
        return "a list"
    if isinstance(default, dict):
        return "an object"
    return None


def _same_type(value: Any, default: Any) -> bool:
    if value is None:
        return False
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, dict):
        return isinstance(value, dict)
    return True
