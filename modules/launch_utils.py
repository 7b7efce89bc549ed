"""A1111's launcher helpers (``modules.launch_utils``, re-exported by ``launch``) for extensions' ``install.py``.

An extension's ``install.py`` runs in its own process (see :func:`modules.extensions.discovery.
run_install_scripts`) and typically does ``import launch`` and ``if not launch.is_installed("x"):
launch.run_pip("install x", "x")``. These are the same names with A1111's signatures and behaviour: commands are
shell strings, a failing command raises ``RuntimeError`` with its output. Standard library only.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
python = sys.executable
git = os.environ.get("GIT", "git")
index_url = os.environ.get("INDEX_URL", "")
dir_repos = "repositories"
default_command_live = os.environ.get("WEBUI_LAUNCH_LIVE_OUTPUT") == "1"
re_requirement = re.compile(r"\s*([-_a-zA-Z0-9]+)\s*(?:==\s*([-+_.a-zA-Z0-9]+))?\s*")


class _Args:
    """``launch.args``: the parsed flags of the Easel process that runs the installer (``EASEL_LAUNCH_ARGS``);
    a flag that is not among them reads None, as A1111's many optional flags do."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def __repr__(self) -> str:
        return f"Namespace({', '.join(f'{k}={v!r}' for k, v in sorted(self.__dict__.items()))})"


def _launch_args() -> _Args:
    try:
        values = json.loads(os.environ.get("EASEL_LAUNCH_ARGS") or "{}")
    except ValueError:
        values = {}
    return _Args(values if isinstance(values, dict) else {})


args = _launch_args()


def run(command: str | list[str], desc: str | None = None, errdesc: str | None = None,
        custom_env: dict[str, str] | None = None, live: bool = default_command_live) -> str:
    """Run a shell command; return its output, or raise ``RuntimeError`` with it when the command fails."""
    if desc is not None:
        print(desc)
    run_kwargs: dict[str, Any] = {"args": command, "shell": isinstance(command, str),
                                  "env": os.environ if custom_env is None else custom_env,
                                  "encoding": "utf8", "errors": "ignore"}
    if not live:
        run_kwargs["stdout"] = run_kwargs["stderr"] = subprocess.PIPE
    result = subprocess.run(**run_kwargs, check=False)
    if result.returncode != 0:
        shown = command if isinstance(command, str) else shlex.join(command)
        message = f"{errdesc or 'Error running command'}.\nCommand: {shown}\nError code: {result.returncode}"
        if result.stdout:
            message += f"\nstdout: {result.stdout}"
        if result.stderr:
            message += f"\nstderr: {result.stderr}"
        raise RuntimeError(message)
    return result.stdout or ""


def is_installed(package: str) -> bool:
    """Whether a distribution (or, failing that, an importable module) named ``package`` is present."""
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return importlib.util.find_spec(package) is not None
    except (ModuleNotFoundError, ValueError):
        return False


def run_pip(command: str, desc: str | None = None, live: bool = default_command_live) -> str:
    """``python -m pip <command> --prefer-binary`` (A1111 signature: ``command`` is a string like ``install x``)."""
    index = f" --index-url {index_url}" if index_url else ""
    return run(f'"{python}" -m pip {command} --prefer-binary{index}', desc=f"Installing {desc}" if desc else None,
               errdesc=f"Couldn't install {desc}", live=live)


def check_run_python(code: str) -> bool:
    result = subprocess.run([python, "-c", code], capture_output=True, check=False)
    return result.returncode == 0


def repo_dir(name: str) -> str:
    return str(ROOT / dir_repos / name)


def commit_hash() -> str:
    try:
        return subprocess.check_output([git, "-C", str(ROOT), "rev-parse", "HEAD"], text=True,
                                       stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return "<none>"


def git_tag() -> str:
    """The A1111 release tag (``v1.10.1``): the release whose extension contract Easel implements, the same one the
    page footer names. Extensions compare it to choose code paths (``int(git_tag().replace("v", "")...)``); the
    tag of Easel's own repository would mean nothing to them."""
    from modules.extensions.a1111_ui import A1111_COMPATIBLE_VERSION

    return A1111_COMPATIBLE_VERSION


def git_clone(url: str, dir: str, name: str, commithash: str | None = None) -> None:
    if not os.path.exists(dir):
        run([git, "clone", url, dir], f"Cloning {name} into {dir}...", f"Couldn't clone {name}")
    if commithash is not None:
        run([git, "-C", dir, "checkout", commithash], None, f"Couldn't checkout {name}'s hash: {commithash}")


def git_pull_recursive(dir: str) -> None:
    for subdir, _, _ in os.walk(dir):
        if os.path.exists(os.path.join(subdir, ".git")):
            run([git, "-C", subdir, "pull", "--autostash"], None, f"Couldn't pull {subdir}")


def requirements_met(requirements_file: str) -> bool:
    """Whether every ``name==version`` (or bare name) line of a requirements file is installed."""
    for line in Path(requirements_file).read_text(encoding="utf8").splitlines():
        if not line.strip() or line.strip().startswith("#"):
            continue
        match = re_requirement.match(line)
        if match is None:
            return False
        package, version = match.group(1), match.group(2)
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return False
        if version is not None and version.strip() != installed:
            return False
    return True


def list_extensions(settings_file: str) -> list[str]:
    """Enabled extension folder names (A1111: minus ``disabled_extensions`` of the settings file)."""
    try:
        settings = json.loads(Path(settings_file).read_text(encoding="utf8"))
    except (OSError, ValueError):
        settings = {}
    disabled = set(settings.get("disabled_extensions", [])) if isinstance(settings, dict) else set()
    folder = ROOT / "extensions"
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in disabled) if folder.is_dir() \
        else []


def run_extension_installer(extension_dir: str) -> None:
    """Run ``<extension_dir>/install.py`` the way Easel's start-up does (web UI folder on ``PYTHONPATH``)."""
    installer = os.path.join(extension_dir, "install.py")
    if not os.path.isfile(installer):
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    print(run(f'"{python}" "{installer}"', errdesc=f"Error running install.py for extension {extension_dir}",
              custom_env=env).strip())
