"""Torch build choice per platform, detection parsing and the install stamp (no network, no pip)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modules.core import installer
from modules.core.installer import (
    TORCH_REQUIREMENT,
    InstallStamp,
    PlatformInfo,
    TorchChoice,
    choose_torch_command,
)

INDEX = "https://download.pytorch.org/whl"


def test_cpu_only_machine_installs_plain_pinned_torch() -> None:
    choice = choose_torch_command(PlatformInfo(system="Linux", machine="x86_64"))
    assert choice.backend == "cpu"
    assert choice.args == ("torch==2.13.0",)
    assert choice.command == "pip install torch==2.13.0"


@pytest.mark.parametrize(
    ("driver", "tag"),
    [("13.0", "cu130"), ("13.1", "cu130"), ("12.9", "cu128"), ("12.8", "cu128"), ("12.6", "cu126"),
     ("11.8", "cu126"), (None, "cu130")],
)
def test_cuda_picks_index_for_driver_version(driver: str | None, tag: str) -> None:
    choice = choose_torch_command(PlatformInfo(nvidia=True, cuda_driver_version=driver))
    assert choice.backend == "cuda"
    assert choice.args == (TORCH_REQUIREMENT, "--index-url", f"{INDEX}/{tag}")


@pytest.mark.parametrize(
    ("hip", "tag"),
    [("7.2.0", "rocm7.1"), ("7.1.1", "rocm7.1"), ("7.0.2", "rocm7.0"), ("6.4.1", "rocm6.4"), ("6.2", "rocm6.4"),
     (None, "rocm7.1")],
)
def test_rocm_picks_index_for_hip_version(hip: str | None, tag: str) -> None:
    choice = choose_torch_command(PlatformInfo(rocm=True, hip_version=hip, gfx_arch="gfx1100"))
    assert choice.backend == "rocm"
    assert choice.args == (TORCH_REQUIREMENT, "--index-url", f"{INDEX}/{tag}")
    assert choice.runtime_env == ()


def test_rocm_unlisted_rdna2_gets_gfx_override() -> None:
    choice = choose_torch_command(PlatformInfo(rocm=True, hip_version="6.4", gfx_arch="gfx1032"))
    assert dict(choice.runtime_env) == {"HSA_OVERRIDE_GFX_VERSION": "10.3.0"}


def test_rocm_is_linux_only() -> None:
    assert choose_torch_command(PlatformInfo(system="Windows", rocm=True, hip_version="6.4")).backend == "cpu"


def test_intel_xpu_uses_xpu_index() -> None:
    choice = choose_torch_command(PlatformInfo(intel_xpu=True))
    assert choice.backend == "xpu"
    assert choice.args == (TORCH_REQUIREMENT, "--index-url", f"{INDEX}/xpu")


def test_directml_on_windows_installs_torch_directml() -> None:
    choice = choose_torch_command(PlatformInfo(system="Windows", machine="amd64", use_directml=True, nvidia=True))
    assert choice.backend == "directml"
    assert choice.args == (TORCH_REQUIREMENT, "torch-directml")


def test_directml_request_is_ignored_off_windows() -> None:
    assert choose_torch_command(PlatformInfo(system="Linux", use_directml=True)).backend == "cpu"


def test_macos_arm64_uses_pypi_wheel_with_mps() -> None:
    choice = choose_torch_command(PlatformInfo(system="Darwin", machine="arm64"))
    assert (choice.backend, choice.args) == ("mps", (TORCH_REQUIREMENT,))
    intel_mac = choose_torch_command(PlatformInfo(system="Darwin", machine="x86_64"))
    assert (intel_mac.backend, intel_mac.args) == ("cpu", (TORCH_REQUIREMENT,))


def test_macos_ignores_oneapi_folders() -> None:
    assert choose_torch_command(PlatformInfo(system="Darwin", machine="arm64", intel_xpu=True)).backend == "mps"


@pytest.mark.parametrize(
    "command",
    ["torch==2.13.0+cu128 --index-url https://example.invalid/whl",
     "pip install torch==2.13.0+cu128 --index-url https://example.invalid/whl",
     "python -m pip install torch==2.13.0+cu128 --index-url https://example.invalid/whl"],
)
def test_torch_command_override_wins_over_detection(command: str) -> None:
    info = PlatformInfo(nvidia=True, cuda_driver_version="12.8", rocm=True, torch_command=command)
    choice = choose_torch_command(info)
    assert choice.backend == "custom"
    assert choice.args == ("torch==2.13.0+cu128", "--index-url", "https://example.invalid/whl")


def test_nvidia_beats_rocm_and_xpu() -> None:
    assert choose_torch_command(PlatformInfo(nvidia=True, rocm=True, intel_xpu=True)).backend == "cuda"
    assert choose_torch_command(PlatformInfo(rocm=True, intel_xpu=True)).backend == "rocm"


def test_use_cpu_does_not_change_the_build() -> None:
    """Toggling --use-cpu between starts must not reinstall gigabytes of torch."""
    info = PlatformInfo(nvidia=True, cuda_driver_version="12.8")
    assert choose_torch_command(info) == choose_torch_command(PlatformInfo(**{**info.__dict__, "use_cpu": True}))


@pytest.mark.parametrize(
    "info",
    [PlatformInfo(), PlatformInfo(nvidia=True), PlatformInfo(rocm=True), PlatformInfo(intel_xpu=True),
     PlatformInfo(system="Windows", use_directml=True), PlatformInfo(system="Darwin", machine="arm64")],
)
def test_every_platform_pins_torch_and_is_pure(info: PlatformInfo) -> None:
    first = choose_torch_command(info)
    assert TORCH_REQUIREMENT in first.args
    assert not any(arg.startswith("torchvision") for arg in first.args)
    assert choose_torch_command(info) == first


def test_parsers_of_probe_output() -> None:
    smi = "| NVIDIA-SMI 570.86.10   Driver Version: 570.86.10   CUDA Version: 12.8     |"
    assert installer.parse_cuda_driver_version(smi) == "12.8"
    assert installer.parse_cuda_driver_version("no gpu") is None
    rocminfo = "Agent 1\n  Name: AMD Ryzen\n  Name: gfx000\nAgent 2\n  Name: gfx1100\n  Marketing Name: Radeon"
    assert installer.parse_gfx_arch(rocminfo) == "gfx1100"
    assert installer.parse_gfx_arch("") is None


def test_detect_platform_reads_flags_and_environment() -> None:
    info = installer.detect_platform(
        use_directml=True, use_cpu=True, environ={"TORCH_COMMAND": "torch==2.13.0"}, probe=lambda _cmd: None
    )
    assert info.use_directml and info.use_cpu
    assert info.torch_command == "torch==2.13.0"
    assert info.python_version[0] == 3
    assert installer.detect_platform(environ={}, probe=lambda _cmd: None).torch_command is None


# ------------------------------------------------------------------------------------------------------ stamp

CPU = TorchChoice("cpu", (TORCH_REQUIREMENT,), "test")


@pytest.fixture
def reqs(tmp_path: Path) -> tuple[Path, Path]:
    base = tmp_path / "requirements.txt"
    dev = tmp_path / "requirements-dev.txt"
    base.write_text("torch==2.13.0\nnumpy>=1.26,<3\n")
    dev.write_text("pytest>=9,<10\n")
    return base, dev


def test_requirements_hash_tracks_content_and_ignores_order(reqs: tuple[Path, Path]) -> None:
    base, dev = reqs
    before = installer.requirements_hash([base, dev])
    assert installer.requirements_hash([dev, base]) == before
    assert len(before) == 64
    base.write_text("torch==2.13.0\nnumpy>=2,<3\n")
    assert installer.requirements_hash([base, dev]) != before
    missing = base.with_name("nope.txt")
    assert installer.requirements_hash([missing]) != installer.requirements_hash([])


def test_needs_install_until_stamped(tmp_path: Path, reqs: tuple[Path, Path]) -> None:
    stamp = tmp_path / "venv" / ".easel-install-stamp"
    wanted = InstallStamp.expected([reqs[0]], CPU, python="3.11.7")
    assert installer.needs_install(stamp, wanted)
    installer.record_install(stamp, wanted)
    assert not installer.needs_install(stamp, wanted)
    assert installer.read_stamp(stamp) == wanted
    assert [p.name for p in stamp.parent.iterdir()] == [stamp.name]  # no temp file left behind


@pytest.mark.parametrize("change", ["requirements", "torch", "python"])
def test_any_change_requires_install(tmp_path: Path, reqs: tuple[Path, Path], change: str) -> None:
    stamp = tmp_path / "stamp"
    installer.record_install(stamp, InstallStamp.expected([reqs[0]], CPU, python="3.11.7"))
    choice, python = CPU, "3.11.7"
    if change == "requirements":
        reqs[0].write_text("torch==2.13.0\n")
    elif change == "torch":
        choice = TorchChoice("cuda", (TORCH_REQUIREMENT, "--index-url", f"{INDEX}/cu128"), "test")
    else:
        python = "3.12.1"
    assert installer.needs_install(stamp, InstallStamp.expected([reqs[0]], choice, python=python))


def test_test_install_also_covers_a_plain_start(tmp_path: Path, reqs: tuple[Path, Path]) -> None:
    base, dev = reqs
    stamp = tmp_path / "stamp"
    installer.record_install(stamp, InstallStamp.expected([base], CPU, python="3.11.7"))
    with_dev = InstallStamp.expected([base, dev], CPU, python="3.11.7")
    assert installer.needs_install(stamp, with_dev)
    installer.record_install(stamp, with_dev)
    assert not installer.needs_install(stamp, InstallStamp.expected([base], CPU, python="3.11.7"))
    assert not installer.needs_install(stamp, with_dev)


def test_corrupt_stamp_means_install(tmp_path: Path, reqs: tuple[Path, Path]) -> None:
    stamp = tmp_path / "stamp"
    wanted = InstallStamp.expected([reqs[0]], CPU, python="3.11.7")
    for garbage in ("{not json", "[]", '{"python": "3.11.7"}', '{"python": 1, "torch_command": 2, "requirements": 3}'):
        stamp.write_text(garbage)
        assert installer.needs_install(stamp, wanted)


def test_default_stamp_path_is_inside_the_environment(tmp_path: Path) -> None:
    assert installer.default_stamp_path({}) == Path(sys.prefix) / ".easel-install-stamp"
    assert installer.default_stamp_path({"EASEL_INSTALL_STAMP": str(tmp_path / "s")}) == tmp_path / "s"
