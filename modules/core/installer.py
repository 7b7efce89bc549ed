"""Platform detection, torch build choice and the install stamp used by ``launch.py``.

This module runs before any dependency is installed, so it imports the standard library only. It is split in
three parts that can be tested apart:

* :func:`detect_platform` probes the machine (``nvidia-smi``, ``rocminfo``, oneAPI folders, ...) and returns a
  :class:`PlatformInfo`; it changes nothing.
* :func:`choose_torch_command` is a pure function from :class:`PlatformInfo` to the ``pip install`` arguments of
  the torch build for that platform (the way SD.Next picks one), so every platform is unit-testable on any
  machine.
* :class:`InstallStamp` records what was installed into a virtual environment (hash of each requirements file,
  torch command, Python version), so a start with nothing new to install never runs pip.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

TORCH_VERSION = "2.13.0"
TORCH_REQUIREMENT = f"torch=={TORCH_VERSION}"
PYTORCH_WHEEL_INDEX = "https://download.pytorch.org/whl"
STAMP_FILE_NAME = ".easel-install-stamp"
STAMP_ENV_VAR = "EASEL_INSTALL_STAMP"

# Newest CUDA wheel flavour whose minimum driver CUDA version is <= the driver's, newest first. A driver
# reports the highest CUDA runtime it supports ("CUDA Version: 12.8" in nvidia-smi).
CUDA_WHEEL_TAGS: tuple[tuple[tuple[int, int], str], ...] = (
    ((13, 0), "cu130"),
    ((12, 8), "cu128"),
    ((12, 6), "cu126"),
)
# ROCm wheel flavours by the installed HIP/ROCm version, newest first.
ROCM_WHEEL_TAGS: tuple[tuple[tuple[int, int], str], ...] = (
    ((7, 1), "rocm7.1"),
    ((7, 0), "rocm7.0"),
    ((6, 4), "rocm6.4"),
)
# Consumer GPUs that ROCm does not list but run with the kernels of a sibling architecture; the override is
# a runtime environment variable, set by the launcher only when the user has not set it.
HSA_GFX_OVERRIDES: Mapping[str, str] = {
    "gfx1031": "10.3.0",
    "gfx1032": "10.3.0",
    "gfx1034": "10.3.0",
    "gfx1035": "10.3.0",
    "gfx1036": "10.3.0",
    "gfx1103": "11.0.0",
}


@dataclass(frozen=True)
class PlatformInfo:
    """What :func:`detect_platform` found. Every field has a neutral default so tests state only what matters."""

    system: str = "Linux"  # platform.system(): Linux, Windows, Darwin
    machine: str = "x86_64"
    python_version: tuple[int, int, int] = (3, 11, 0)
    nvidia: bool = False
    cuda_driver_version: str | None = None  # highest CUDA version the driver supports, e.g. "12.8"
    rocm: bool = False
    hip_version: str | None = None  # e.g. "6.4.1"
    gfx_arch: str | None = None  # e.g. "gfx1100"
    intel_xpu: bool = False
    use_directml: bool = False
    use_cpu: bool = False
    torch_command: str | None = None  # TORCH_COMMAND from the environment, verbatim

    @property
    def is_macos_arm64(self) -> bool:
        return self.system == "Darwin" and self.machine in ("arm64", "aarch64")


@dataclass(frozen=True)
class TorchChoice:
    """The torch build to install: ``pip install <args>``, why it was chosen, and runtime env it needs."""

    backend: str  # cuda, rocm, xpu, directml, mps, cpu or custom
    args: tuple[str, ...]
    reason: str
    runtime_env: tuple[tuple[str, str], ...] = field(default=())

    @property
    def command(self) -> str:
        """The full command line, also what the install stamp records."""
        return "pip install " + shlex.join(self.args)


# --------------------------------------------------------------------------------------------------- detection


def _run_probe(command: Sequence[str], timeout: float = 10.0) -> str | None:
    """Run a read-only probe tool and return its stdout, or ``None`` when it is missing, fails or hangs."""
    if shutil.which(command[0]) is None:
        return None
    try:
        completed = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout if completed.returncode == 0 else None


def parse_cuda_driver_version(nvidia_smi_output: str) -> str | None:
    """``"... CUDA Version: 12.8 ..."`` -> ``"12.8"``."""
    match = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", nvidia_smi_output)
    return match.group(1) if match else None


def parse_gfx_arch(rocminfo_output: str) -> str | None:
    """First GPU agent architecture in ``rocminfo`` output (``gfx000`` is the CPU agent on some systems)."""
    for match in re.finditer(r"\b(gfx[0-9a-f]{3,5})\b", rocminfo_output):
        if match.group(1) != "gfx000":
            return match.group(1)
    return None


def _detect_hip_version(rocm_root: Path) -> str | None:
    version_file = rocm_root / ".info" / "version"
    try:
        text = version_file.read_text(encoding="utf-8").strip()
    except OSError:
        text = _run_probe(["hipconfig", "--version"]) or ""
    match = re.match(r"([0-9]+\.[0-9]+(?:\.[0-9]+)?)", text.strip())
    return match.group(1) if match else None


def detect_platform(
    *,
    use_directml: bool = False,
    use_cpu: bool = False,
    environ: Mapping[str, str] | None = None,
    probe: Callable[[Sequence[str]], str | None] = _run_probe,
) -> PlatformInfo:
    """Probe the machine for accelerators. Runs read-only tools only; installs and changes nothing."""
    env = os.environ if environ is None else environ
    system = platform.system()
    machine = platform.machine().lower()

    nvidia = shutil.which("nvidia-smi") is not None or Path("/proc/driver/nvidia/version").exists()
    cuda_driver_version = None
    if nvidia:
        cuda_driver_version = parse_cuda_driver_version(probe(["nvidia-smi"]) or "")

    rocm_root = Path(env.get("ROCM_PATH", "/opt/rocm"))
    rocm = system == "Linux" and (shutil.which("rocminfo") is not None or rocm_root.is_dir())
    hip_version = _detect_hip_version(rocm_root) if rocm else None
    gfx_arch = parse_gfx_arch(probe(["rocminfo"]) or "") if rocm else None

    oneapi_root = env.get("ONEAPI_ROOT")
    intel_xpu = bool(oneapi_root) or Path("/opt/intel/oneapi").is_dir() or shutil.which("sycl-ls") is not None

    return PlatformInfo(
        system=system,
        machine=machine,
        python_version=(sys.version_info.major, sys.version_info.minor, sys.version_info.micro),
        nvidia=nvidia,
        cuda_driver_version=cuda_driver_version,
        rocm=rocm,
        hip_version=hip_version,
        gfx_arch=gfx_arch,
        intel_xpu=intel_xpu,
        use_directml=use_directml,
        use_cpu=use_cpu,
        torch_command=env.get("TORCH_COMMAND") or None,
    )


# --------------------------------------------------------------------------------------------------- choice


def _version_tuple(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    match = re.match(r"([0-9]+)\.([0-9]+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _wheel_tag(version: str | None, table: tuple[tuple[tuple[int, int], str], ...]) -> str:
    """Newest tag whose minimum version the installed one meets; unknown -> newest; too old -> oldest."""
    found = _version_tuple(version)
    if found is None:
        return table[0][1]
    for minimum, tag in table:
        if found >= minimum:
            return tag
    return table[-1][1]


def _index_args(tag: str) -> tuple[str, ...]:
    return (TORCH_REQUIREMENT, "--index-url", f"{PYTORCH_WHEEL_INDEX}/{tag}")


def _override(info: PlatformInfo) -> TorchChoice | None:
    if not info.torch_command:
        return None
    words = shlex.split(info.torch_command)
    # Accept both spellings in use: SD.Next's bare arguments and A1111's "pip install ..." / "python -m pip ...".
    for prefix in (["python", "-m", "pip", "install"], ["python3", "-m", "pip", "install"], ["pip", "install"]):
        if words[: len(prefix)] == prefix:
            words = words[len(prefix):]
            break
    return TorchChoice("custom", tuple(words), "TORCH_COMMAND is set")


def _directml(info: PlatformInfo) -> TorchChoice | None:
    if not info.use_directml or info.system != "Windows":
        return None
    return TorchChoice("directml", (TORCH_REQUIREMENT, "torch-directml"), "--use-directml on Windows")


def _cuda(info: PlatformInfo) -> TorchChoice | None:
    if not info.nvidia:
        return None
    tag = _wheel_tag(info.cuda_driver_version, CUDA_WHEEL_TAGS)
    known = info.cuda_driver_version or "unknown"
    return TorchChoice("cuda", _index_args(tag), f"NVIDIA driver (CUDA {known}) -> {tag} wheels")


def _rocm(info: PlatformInfo) -> TorchChoice | None:
    if not info.rocm or info.system != "Linux":
        return None
    tag = _wheel_tag(info.hip_version, ROCM_WHEEL_TAGS)
    override = HSA_GFX_OVERRIDES.get(info.gfx_arch or "")
    runtime_env = (("HSA_OVERRIDE_GFX_VERSION", override),) if override else ()
    reason = f"ROCm (HIP {info.hip_version or 'unknown'}, {info.gfx_arch or 'arch unknown'}) -> {tag} wheels"
    return TorchChoice("rocm", _index_args(tag), reason, runtime_env)


def _xpu(info: PlatformInfo) -> TorchChoice | None:
    if not info.intel_xpu or info.system not in ("Linux", "Windows"):
        return None
    return TorchChoice("xpu", _index_args("xpu"), "Intel oneAPI found -> xpu wheels")


def _macos(info: PlatformInfo) -> TorchChoice | None:
    if info.system != "Darwin":
        return None
    # PyPI's macOS wheels carry MPS support; there is no separate index.
    reason = "macOS arm64 -> PyPI wheel with MPS" if info.is_macos_arm64 else "macOS x86_64 -> PyPI wheel (CPU)"
    return TorchChoice("mps" if info.is_macos_arm64 else "cpu", (TORCH_REQUIREMENT,), reason)


# Tried in order; the first rule that applies wins. An explicit request beats detection, and a discrete
# accelerator beats the rest (matching SD.Next's precedence).
_TORCH_RULES: tuple[Callable[[PlatformInfo], TorchChoice | None], ...] = (
    _override,
    _directml,
    _cuda,
    _rocm,
    _xpu,
    _macos,
)


def choose_torch_command(info: PlatformInfo) -> TorchChoice:
    """Pick the torch build for ``info``. Pure: the same info always gives the same choice.

    ``--use-cpu`` deliberately does not change the build: every accelerator build also runs on the CPU, and a
    flag toggled between starts must not trigger a multi-gigabyte reinstall.
    """
    for rule in _TORCH_RULES:
        choice = rule(info)
        if choice is not None:
            return choice
    return TorchChoice("cpu", (TORCH_REQUIREMENT,), "no accelerator found -> default wheel")


# --------------------------------------------------------------------------------------------------- stamp


def file_hash(path: Path) -> str:
    """sha256 of one file's bytes; a missing file hashes to a fixed marker so its later creation is noticed."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"


def requirements_hash(paths: Iterable[Path]) -> str:
    """One sha256 over the names and contents of ``paths`` (order-independent)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        digest.update(path.name.encode("utf-8") + b"\0" + file_hash(path).encode("ascii") + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class InstallStamp:
    """What was installed into one environment. ``requirements`` maps a file name to its :func:`file_hash`."""

    python: str
    torch_command: str
    requirements: Mapping[str, str]

    @classmethod
    def expected(
        cls, requirement_files: Iterable[Path], choice: TorchChoice, python: str | None = None
    ) -> InstallStamp:
        """The stamp a finished install of ``requirement_files`` + ``choice`` under ``python`` would leave."""
        version = python or platform.python_version()
        return cls(version, choice.command, {Path(p).name: file_hash(Path(p)) for p in requirement_files})

    def covers(self, wanted: InstallStamp) -> bool:
        """True when everything ``wanted`` needs is already recorded here (extra recorded files are fine)."""
        if (self.python, self.torch_command) != (wanted.python, wanted.torch_command):
            return False
        return all(self.requirements.get(name) == digest for name, digest in wanted.requirements.items())

    def merged_with(self, installed: InstallStamp) -> InstallStamp:
        """The stamp after installing ``installed`` on top of this one (keeps other files' entries)."""
        if (self.python, self.torch_command) != (installed.python, installed.torch_command):
            return installed
        return InstallStamp(installed.python, installed.torch_command, {**self.requirements, **installed.requirements})

    def to_json(self) -> str:
        payload = {"python": self.python, "torch_command": self.torch_command, "requirements": dict(self.requirements)}
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"


def default_stamp_path(environ: Mapping[str, str] | None = None) -> Path:
    """The stamp lives inside the running environment, so a recreated venv is reinstalled from scratch."""
    env = os.environ if environ is None else environ
    override = env.get(STAMP_ENV_VAR)
    return Path(override) if override else Path(sys.prefix) / STAMP_FILE_NAME


def read_stamp(path: Path) -> InstallStamp | None:
    """The recorded stamp, or ``None`` when it is missing or unreadable (which simply means "install")."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        requirements = raw["requirements"]
        if not isinstance(requirements, dict):
            return None
        recorded = {str(name): str(digest) for name, digest in requirements.items()}
        return InstallStamp(str(raw["python"]), str(raw["torch_command"]), recorded)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_stamp(path: Path, stamp: InstallStamp) -> None:
    """Write atomically (temp file + rename): a crash mid-write must not leave a stamp that claims too much."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(stamp.to_json())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def needs_install(stamp_path: Path, wanted: InstallStamp) -> bool:
    """True unless the stamp at ``stamp_path`` already covers ``wanted``."""
    recorded = read_stamp(stamp_path)
    return recorded is None or not recorded.covers(wanted)


def record_install(stamp_path: Path, installed: InstallStamp) -> InstallStamp:
    """Merge ``installed`` into the stamp at ``stamp_path`` and write it; returns what was written."""
    recorded = read_stamp(stamp_path)
    stamp = recorded.merged_with(installed) if recorded is not None else installed
    write_stamp(stamp_path, stamp)
    return stamp
