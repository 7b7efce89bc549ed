"""Finding extensions and their script files, in A1111's order.

Layout (A1111's, see ``docs/A1111-CONTRACT.md``): ``scripts/*.py`` of the web UI come first, then
``extensions/*/scripts/*.py`` of every enabled extension. Extensions are ordered alphabetically, then by
``metadata.ini``'s ``[Extension]`` keys ``Requires``/``Before``/``After`` (comma-separated extension names) with a
stable topological sort; a cycle or a missing requirement is reported, never fatal. An extension's ``install.py``
runs only with the ``--allow-extension-install`` flag: it can install arbitrary packages, so it needs the user's
explicit consent.
"""

from __future__ import annotations

import configparser
import logging
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BUILTIN = "builtin"
"""Owner name of the web UI's own ``scripts/`` folder."""


@dataclass
class Extension:
    name: str
    path: Path
    enabled: bool = True
    canonical_name: str = ""
    requires: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def scripts_dir(self) -> Path:
        return self.path / "scripts"

    def script_files(self) -> list[Path]:
        return list_script_files(self.scripts_dir)


@dataclass(frozen=True)
class ScriptFile:
    owner: str  # extension name, or BUILTIN
    path: Path

    @property
    def basedir(self) -> Path:
        """The folder whose ``scripts/`` holds the file (A1111's ``scripts.basedir()``)."""
        return self.path.parent.parent


def list_script_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.suffix == ".py" and p.is_file()), key=lambda p: p.name.lower())


def _names(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def read_metadata(extension: Extension) -> None:
    ini = extension.path / "metadata.ini"
    extension.canonical_name = extension.name
    if not ini.is_file():
        return
    parser = configparser.ConfigParser()
    try:
        parser.read(ini, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        extension.problems.append(f"metadata.ini unreadable: {exc}")
        return
    if parser.has_section("Extension"):
        section = parser["Extension"]
        extension.canonical_name = (section.get("Name") or extension.name).strip().lower() or extension.name
        extension.requires = _names(section.get("Requires"))
        extension.before = _names(section.get("Before"))
        extension.after = _names(section.get("After"))


def discover_extensions(roots: Iterable[Path], disabled: Iterable[str] = ()) -> list[Extension]:
    """Every folder under ``roots`` (``extensions/``), in load order; disabled ones are listed but marked."""
    disabled_names = {name.lower() for name in disabled}
    found: list[Extension] = []
    for root in roots:
        if not root.is_dir():
            continue
        for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name.lower()):
            if folder.name.startswith((".", "_")):
                continue
            extension = Extension(folder.name, folder)
            read_metadata(extension)
            extension.enabled = folder.name.lower() not in disabled_names and \
                extension.canonical_name.lower() not in disabled_names
            found.append(extension)
    return order_extensions(found)


def order_extensions(extensions: list[Extension]) -> list[Extension]:
    """Stable topological order: ``After``/``Requires`` name predecessors, ``Before`` successors."""
    by_name: dict[str, Extension] = {}
    for extension in extensions:
        by_name[extension.name.lower()] = extension
        by_name.setdefault(extension.canonical_name.lower(), extension)
    enabled = {ext.name.lower() for ext in extensions if ext.enabled}
    edges: dict[str, set[str]] = {ext.name: set() for ext in extensions}  # name -> must come before it
    for extension in extensions:
        for required in extension.requires:
            target = by_name.get(required.lower())
            if target is None or target.name.lower() not in enabled:
                if extension.enabled:
                    extension.problems.append(f"requires {required!r}, which is not installed or is disabled")
                continue
            edges[extension.name].add(target.name)
        for name in extension.after:
            target = by_name.get(name.lower())
            if target is not None:
                edges[extension.name].add(target.name)
        for name in extension.before:
            target = by_name.get(name.lower())
            if target is not None:
                edges[target.name].add(extension.name)
    ordered: list[Extension] = []
    placed: set[str] = set()
    remaining = list(extensions)
    while remaining:
        for extension in remaining:
            if edges[extension.name] <= placed:
                break
        else:  # a cycle: keep alphabetical order for the rest and say so
            extension = remaining[0]
            extension.problems.append("load order cycle in metadata.ini; loaded alphabetically")
        ordered.append(extension)
        placed.add(extension.name)
        remaining.remove(extension)
    return ordered


def collect_script_files(builtin_dirs: Iterable[Path], extensions: Iterable[Extension]) -> list[ScriptFile]:
    files = [ScriptFile(BUILTIN, path) for folder in builtin_dirs for path in list_script_files(folder)]
    for extension in extensions:
        if extension.enabled:
            files.extend(ScriptFile(extension.name, path) for path in extension.script_files())
    return files


@dataclass
class InstallResult:
    extension: str
    ran: bool
    returncode: int | None = None
    output: str = ""


def run_install_scripts(extensions: Iterable[Extension], *, allowed: bool, timeout: float = 600,
                        launch_args: dict[str, object] | None = None) -> list[InstallResult]:
    """Run each enabled extension's ``install.py`` (only when ``allowed``); failures are reported, not raised.

    As in A1111 the script runs with the web UI's folder as working directory and first on ``PYTHONPATH``, so
    ``import launch`` finds A1111's helpers (``launch.is_installed``, ``launch.run_pip`` ...); ``launch.args``
    holds ``launch_args`` (the parsed flags).
    """
    import json
    import os

    from modules.core.paths import REPO_ROOT

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["EASEL_LAUNCH_ARGS"] = json.dumps(launch_args or {}, default=str)
    results = []
    for extension in extensions:
        script = extension.path / "install.py"
        if not extension.enabled or not script.is_file():
            continue
        if not allowed:
            log.info("extension %s has install.py; not run (start with --allow-extension-install to run it)",
                     extension.name)
            results.append(InstallResult(extension.name, False))
            continue
        try:
            done = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=timeout, check=False, env=env)
            output = (done.stdout + done.stderr)[-4000:]
            if done.returncode:
                log.error("extension %s: install.py exited with %d:\n%s", extension.name, done.returncode, output)
            results.append(InstallResult(extension.name, True, done.returncode, output))
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("extension %s: install.py could not run: %s", extension.name, exc)
            results.append(InstallResult(extension.name, True, None, str(exc)))
    return results
