"""Easel launcher: make sure a virtual environment with the right torch build exists, then start Easel.

``python launch.py [flags]`` works on a machine that has nothing but Python >= 3.10, so this file imports the
standard library only (plus ``modules.core.installer``, which is stdlib-only too):

1. Outside a virtual environment: create ``venv/`` next to this file if needed and re-run this script with the
   venv's interpreter (same arguments).
2. Inside one: unless ``--skip-install``, compare the install stamp with what is wanted (torch build for this
   platform, hash of ``requirements.txt`` and, with ``--test``, ``requirements-dev.txt``, with ``--workers`` or
   ``--ray-address``, ``requirements-ray.txt``, Python version). Only when they differ (or with ``--reinstall``)
   run pip, then record the stamp. A matching stamp runs no pip.
3. ``--test [pytest args]`` runs ``python -m pytest`` and returns its exit code; otherwise ``webui.main(argv)``
   gets every flag and parses it (unknown flags are its error to report).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if sys.version_info < (3, 10):  # noqa: UP036 - the one place that must say this clearly on an old Python
    sys.exit(f"Easel needs Python >= 3.10 (this is {sys.version.split()[0]})")

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from modules.core import installer  # noqa: E402 - needs ROOT on sys.path

log = logging.getLogger("easel.launch")

VENV_DIR = ROOT / "venv"
REQUIREMENTS = ROOT / "requirements.txt"
DEV_REQUIREMENTS = ROOT / "requirements-dev.txt"
# Packages whose declared dependencies would pull a CUDA torchvision (broken against the pinned torch):
# installed with --no-deps; their real runtime needs are listed in requirements.txt.
NODEPS_REQUIREMENTS = ROOT / "requirements-nodeps.txt"
# Ray, only for running jobs on workers (--workers / --ray-address); a plain install never gets it.
RAY_REQUIREMENTS = ROOT / "requirements-ray.txt"


def build_launcher_parser() -> argparse.ArgumentParser:
    """Flags the launcher acts on. ``add_help`` is off so ``--help`` reaches webui's full flag list."""
    parser = argparse.ArgumentParser(prog="launch.py", add_help=False, allow_abbrev=False)
    parser.add_argument("--skip-install", action="store_true", help="do not check or install dependencies")
    parser.add_argument("--reinstall", action="store_true", help="ignore the install stamp and reinstall")
    parser.add_argument("--test", action="store_true", help="install dev requirements and run pytest [args]")
    parser.add_argument("--use-directml", action="store_true", help="install torch-directml (Windows)")
    parser.add_argument("--use-cpu", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workers", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ray-address", default=None, help=argparse.SUPPRESS)
    return parser


def in_virtual_environment() -> bool:
    """A venv (``sys.prefix`` differs from the base) or an activated non-base conda environment."""
    if sys.prefix != sys.base_prefix:
        return True
    conda_prefix = os.environ.get("CONDA_PREFIX")
    if not conda_prefix or os.environ.get("CONDA_DEFAULT_ENV") in (None, "base"):
        return False
    return Path(conda_prefix).resolve() == Path(sys.prefix).resolve()


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def create_venv(venv_dir: Path) -> None:
    log.info("creating virtual environment in %s", venv_dir)
    venv.EnvBuilder(with_pip=True, symlinks=os.name != "nt").create(venv_dir)


def reexec(python: Path, argv: Sequence[str]) -> int:
    """Run this script under ``python``. POSIX replaces the process (signals, exit code); Windows cannot."""
    command = [str(python), str(ROOT / "launch.py"), *argv]
    if os.name == "nt":
        return subprocess.call(command)
    os.execv(str(python), command)
    return 0  # unreachable


def run_pip(args: Sequence[str] | str, desc: str | None = None, live: bool | None = None) -> Any:
    """``python -m pip install ...`` with the running interpreter; a failure stops the launch with its code.

    A string is A1111's ``launch.run_pip(command, desc)`` as extensions' ``install.py`` call it
    (``"install x"``: the whole pip command line; a failure raises ``RuntimeError``).
    """
    if isinstance(args, str):
        from modules import launch_utils

        return launch_utils.run_pip(args, desc, live if live is not None else launch_utils.default_command_live)
    command = [sys.executable, "-m", "pip", "install", *args]
    log.info("running: %s", " ".join(command))
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"easel: pip failed (exit code {completed.returncode}): {' '.join(command)}")
    return None


A1111_NAMES = ("args", "python", "git", "index_url", "dir_repos", "run", "is_installed", "repo_dir",
               "check_run_python", "git_clone", "git_pull_recursive", "commit_hash", "git_tag", "requirements_met",
               "list_extensions", "run_extension_installer", "default_command_live", "re_requirement")


def __getattr__(name: str) -> Any:
    """A1111's ``launch`` helpers for extensions' ``install.py`` (``launch.is_installed``, ``launch.run`` ...),
    imported on first use from :mod:`modules.launch_utils` (standard library only)."""
    if name in A1111_NAMES:
        from modules import launch_utils

        return getattr(launch_utils, name)
    raise AttributeError(f"module 'launch' has no attribute {name!r}")


def ensure_installed(*, test: bool, reinstall: bool, use_directml: bool, use_cpu: bool, cluster: bool = False) -> bool:
    """Install torch and the requirements unless the stamp says they are there. Returns whether pip ran.

    ``cluster`` (a ``--workers``/``--ray-address`` start) adds Ray's requirements file."""
    info = installer.detect_platform(use_directml=use_directml, use_cpu=use_cpu)
    choice = installer.choose_torch_command(info)
    for name, value in choice.runtime_env:
        os.environ.setdefault(name, value)
    files = [REQUIREMENTS, NODEPS_REQUIREMENTS, DEV_REQUIREMENTS] if test else [REQUIREMENTS, NODEPS_REQUIREMENTS]
    if cluster:
        files.append(RAY_REQUIREMENTS)
    wanted = installer.InstallStamp.expected(files, choice)
    stamp_path = installer.default_stamp_path()
    if not reinstall and not installer.needs_install(stamp_path, wanted):
        log.debug("install stamp %s matches; skipping pip", stamp_path)
        return False
    log.info("installing torch for %s (%s)", choice.backend, choice.reason)
    # --force-reinstall only on torch: on the requirements it would replace the platform torch build
    # with the default index's one.
    run_pip([*choice.args, *(["--force-reinstall"] if reinstall else [])])
    for path in files:
        if path.exists():
            run_pip(["--no-deps", "-r", str(path)] if path == NODEPS_REQUIREMENTS else ["-r", str(path)])
    importlib.invalidate_caches()
    installer.record_install(stamp_path, wanted)
    return True


def run_tests(pytest_args: Sequence[str]) -> int:
    command = [sys.executable, "-m", "pytest", *pytest_args]
    log.info("running: %s", " ".join(command))
    return subprocess.call(command, cwd=ROOT)


def run_webui(argv: Sequence[str]) -> int:
    import webui  # deferred: its dependencies exist only after the install step

    return int(webui.main(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flags, rest = build_launcher_parser().parse_known_args(args)

    if not in_virtual_environment():
        python = venv_python(VENV_DIR)
        if not python.exists():
            if flags.skip_install:
                log.warning("no virtual environment and --skip-install: using %s as is", sys.executable)
            else:
                create_venv(VENV_DIR)
        if python.exists():
            return reexec(python, args)

    if not flags.skip_install:
        ensure_installed(
            test=flags.test, reinstall=flags.reinstall, use_directml=flags.use_directml, use_cpu=flags.use_cpu,
            cluster=bool(flags.workers or flags.ray_address),
        )

    if flags.test:
        return run_tests(rest)
    return run_webui(args)


if __name__ == "__main__":
    sys.exit(main())
