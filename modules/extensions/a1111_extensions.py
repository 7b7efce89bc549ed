"""A1111's ``modules.extensions`` names (``extensions``, ``active()``, ``find_extension``...) over the extensions
the scripts service discovered. ``modules.extensions`` (Easel's package) resolves them lazily from here."""

from __future__ import annotations

from collections import namedtuple
from pathlib import Path
from typing import Any

from modules.core.paths import REPO_ROOT
from modules.extensions import compat

ScriptFile = namedtuple("ScriptFile", ["basedir", "filename", "path"])
"""A1111's ``scripts.ScriptFile``."""


def list_scripts(scriptdirname: str, extension: str, *, include_extensions: bool = True) -> list[Any]:
    """A1111's ``scripts.list_scripts``: the ``extension`` files of ``<web UI>/<scriptdirname>`` and, with
    ``include_extensions``, of that folder in every enabled extension."""
    found: list[Any] = []
    folder = Path(REPO_ROOT) / scriptdirname
    if folder.is_dir():
        found.extend(ScriptFile(str(REPO_ROOT), path.name, str(path)) for path in sorted(folder.iterdir()))
    if include_extensions:
        for ext in active():
            found.extend(ext.list_files(scriptdirname, extension))
    return [item for item in found if Path(item.path).suffix.lower() == extension.lower() and
            Path(item.path).is_file()]


def list_files_with_name(filename: str) -> list[str]:
    """A1111's ``scripts.list_files_with_name``: ``filename`` in the web UI folder and in every enabled extension."""
    found = []
    for folder in [str(REPO_ROOT), *(ext.path for ext in active())]:
        path = Path(folder) / filename
        if path.is_file():
            found.append(str(path))
    return found


class A1111Extension:
    """A1111's ``Extension``: name, folder, enabled state and (from git) remote and version."""

    def __init__(self, extension: Any, status: dict[str, Any] | None = None) -> None:
        self.name = extension.name
        self.canonical_name = extension.canonical_name or extension.name
        self.path = str(extension.path)
        self.enabled = extension.enabled
        self.is_builtin = False
        self.metadata = extension
        self.status = (status or {}).get("status", "")
        self.remote: str | None = None
        self.branch: str | None = None
        self.commit_hash = ""
        self.commit_date: int | None = None
        self.version = ""
        self.have_info_from_repo = False

    def read_info_from_repo(self) -> None:
        from modules.extensions.scripts_service import _extension_info

        info = _extension_info(self.metadata)
        self.remote, self.branch = info["remote"], info["branch"]
        self.commit_hash, self.commit_date, self.version = info["commit_hash"] or "", info["commit_date"], \
            info["version"]
        self.have_info_from_repo = True

    def list_files(self, subdir: str, extension: str) -> list[Any]:
        """A1111's ``ScriptFile(basedir, filename, path)`` of the files in ``<extension>/<subdir>``."""
        folder = Path(self.path) / subdir
        if not folder.is_dir():
            return []
        return [ScriptFile(self.path, path.name, str(path)) for path in sorted(folder.iterdir())
                if path.is_file() and path.suffix.lower() == extension.lower()]

    def __repr__(self) -> str:
        return f"<Extension {self.name}>"


def _all() -> list[A1111Extension]:
    service = compat.bound().scripts
    if service is None:
        return []
    statuses = {entry["name"]: entry for entry in service.extension_status()}
    return [A1111Extension(extension, statuses.get(extension.name)) for extension in service.extensions]


def active() -> list[A1111Extension]:
    return [extension for extension in _all() if extension.enabled]


def find_extension(name: str) -> A1111Extension | None:
    return next((extension for extension in _all() if extension.name == name or
                 extension.canonical_name == name), None)


def list_extensions() -> None:
    """Extensions are discovered once at start-up (restart to pick up new ones)."""


def value(name: str) -> Any:
    from modules.extensions.a1111_paths import extensions_dir

    values: dict[str, Any] = {"active": active, "find_extension": find_extension, "list_extensions": list_extensions,
                              "Extension": A1111Extension}
    if name in values:
        return values[name]
    if name == "extensions":
        return _all()
    if name == "extensions_dir":
        return extensions_dir()
    if name == "extensions_builtin_dir":
        return str(Path(REPO_ROOT) / "extensions-builtin")
    raise KeyError(name)
