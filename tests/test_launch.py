"""launch.py end to end in a throw-away copy of the repository: pip, pytest and webui are fakes that record
what they were asked, so these tests show exactly when the launcher runs pip and what it forwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FAKE_PIP = """\
import json, os, sys
with open(os.environ["FAKE_PIP_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(int(os.environ.get("FAKE_PIP_RC", "0")))
"""
FAKE_PYTEST = """\
import json, os, sys
with open(os.environ["FAKE_PYTEST_LOG"], "w") as log:
    json.dump(sys.argv[1:], log)
sys.exit(5)
"""
FAKE_WEBUI = """\
import json, os, sys

def main(argv=None):
    with open(os.environ["FAKE_WEBUI_LOG"], "w") as log:
        json.dump({"argv": argv, "prefix": sys.prefix}, log)
    return 3
"""


class Sandbox:
    """A copy of launch.py + installer with fake pip/pytest (shadowing the real ones via PYTHONPATH) and webui."""

    def __init__(self, root: Path) -> None:
        self.root = root / "repo"
        self.logs = root / "logs"
        fakes = root / "fakes"
        for folder in (self.root / "modules" / "core", self.logs, fakes / "pip", fakes / "pytest"):
            folder.mkdir(parents=True)
        shutil.copy(REPO / "launch.py", self.root / "launch.py")
        shutil.copy(REPO / "modules" / "core" / "installer.py", self.root / "modules" / "core" / "installer.py")
        (self.root / "modules" / "__init__.py").write_text("")
        (self.root / "modules" / "core" / "__init__.py").write_text("")
        (self.root / "webui.py").write_text(FAKE_WEBUI)
        (self.root / "requirements.txt").write_text("torch==2.13.0\n")
        (self.root / "requirements-dev.txt").write_text("pytest>=9,<10\n")
        (self.root / "requirements-ray.txt").write_text("ray==2.60.0\n")
        for package, main in (("pip", FAKE_PIP), ("pytest", FAKE_PYTEST)):
            (fakes / package / "__init__.py").write_text("")
            (fakes / package / "__main__.py").write_text(main)
        self.stamp = root / "stamp.json"
        self.env = {key: value for key, value in os.environ.items()
                    if key not in ("TORCH_COMMAND", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHONHOME")}
        self.env.update(
            PYTHONPATH=str(fakes),
            EASEL_INSTALL_STAMP=str(self.stamp),
            FAKE_PIP_LOG=str(self.logs / "pip.jsonl"),
            FAKE_PYTEST_LOG=str(self.logs / "pytest.json"),
            FAKE_WEBUI_LOG=str(self.logs / "webui.json"),
        )

    def run(self, *args: str, python: str = sys.executable, **env: str) -> subprocess.CompletedProcess[str]:
        for log in self.logs.iterdir():
            log.unlink()
        return subprocess.run(
            [python, str(self.root / "launch.py"), *args], cwd=self.root, env={**self.env, **env},
            capture_output=True, text=True, timeout=120, check=False,
        )

    @property
    def pip_calls(self) -> list[list[str]]:
        log = self.logs / "pip.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    @property
    def webui(self) -> dict[str, object] | None:
        log = self.logs / "webui.json"
        return json.loads(log.read_text()) if log.exists() else None


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


def test_first_start_installs_then_second_start_runs_no_pip(sandbox: Sandbox) -> None:
    first = sandbox.run("--port", "9999", "--listen")
    assert first.returncode == 3, first.stderr  # webui.main's return code is the process exit code
    assert sandbox.pip_calls == [
        ["install", "torch==2.13.0"],
        ["install", "-r", str(sandbox.root / "requirements.txt")],
    ]
    assert sandbox.stamp.exists()
    assert sandbox.webui == {"argv": ["--port", "9999", "--listen"], "prefix": sys.prefix}

    second = sandbox.run("--port", "9999")
    assert second.returncode == 3, second.stderr
    assert sandbox.pip_calls == []
    assert sandbox.webui is not None and sandbox.webui["argv"] == ["--port", "9999"]


def test_ray_is_installed_only_for_a_cluster_start(sandbox: Sandbox) -> None:
    sandbox.run("--port", "9999")
    assert all("requirements-ray.txt" not in " ".join(call) for call in sandbox.pip_calls)

    sandbox.run("--workers", "2")
    assert sandbox.pip_calls == [
        ["install", "torch==2.13.0"],
        ["install", "-r", str(sandbox.root / "requirements.txt")],
        ["install", "-r", str(sandbox.root / "requirements-ray.txt")],
    ]
    assert sandbox.webui is not None and sandbox.webui["argv"] == ["--workers", "2"]
    sandbox.run("--ray-address", "10.0.0.5:6379")
    assert sandbox.pip_calls == []  # the stamp covers it now
    sandbox.run()
    assert sandbox.pip_calls == []  # a later plain start needs nothing more


def test_changed_requirements_or_torch_command_reinstall(sandbox: Sandbox) -> None:
    sandbox.run()
    (sandbox.root / "requirements.txt").write_text("torch==2.13.0\nnumpy<3\n")
    sandbox.run()
    assert len(sandbox.pip_calls) == 2
    sandbox.run(TORCH_COMMAND="torch==2.13.0 --index-url https://example.invalid/cu128")
    assert sandbox.pip_calls[0] == ["install", "torch==2.13.0", "--index-url", "https://example.invalid/cu128"]


def test_skip_install_never_runs_pip_and_forwards_flags(sandbox: Sandbox) -> None:
    result = sandbox.run("--skip-install", "--help")
    assert result.returncode == 3, result.stderr
    assert sandbox.pip_calls == []
    assert not sandbox.stamp.exists()
    assert sandbox.webui is not None and sandbox.webui["argv"] == ["--skip-install", "--help"]


def test_reinstall_ignores_the_stamp(sandbox: Sandbox) -> None:
    sandbox.run()
    sandbox.run("--reinstall")
    assert sandbox.pip_calls[0] == ["install", "torch==2.13.0", "--force-reinstall"]
    assert sandbox.pip_calls[1][:2] == ["install", "-r"]


def test_test_mode_installs_dev_requirements_and_passes_pytest_exit_code(sandbox: Sandbox) -> None:
    result = sandbox.run("--test", "-k", "devices", "-q")
    assert result.returncode == 5, result.stderr
    assert ["install", "-r", str(sandbox.root / "requirements-dev.txt")] in sandbox.pip_calls
    assert json.loads((sandbox.logs / "pytest.json").read_text()) == ["-k", "devices", "-q"]
    assert sandbox.webui is None
    again = sandbox.run("--test")
    assert again.returncode == 5
    assert sandbox.pip_calls == []
    sandbox.run()  # the test install covers a plain start as well
    assert sandbox.pip_calls == []


def test_pip_failure_stops_the_launch_without_a_stamp(sandbox: Sandbox) -> None:
    result = sandbox.run(FAKE_PIP_RC="1")
    assert result.returncode != 0
    assert "pip failed" in result.stderr
    assert not sandbox.stamp.exists()
    assert sandbox.webui is None


@pytest.mark.slow  # ensurepip alone takes 5-25 s on a busy 2-core machine
def test_fresh_machine_creates_venv_and_reexecutes(sandbox: Sandbox) -> None:
    base_python = getattr(sys, "_base_executable", None) or shutil.which("python3")
    assert base_python
    probe = subprocess.run([base_python, "-c", "import sys; print(sys.prefix != sys.base_prefix)"],
                           capture_output=True, text=True, check=True)
    if probe.stdout.strip() != "False":
        pytest.skip("no interpreter outside a virtual environment to start from")
    result = sandbox.run("--port", "1234", python=base_python)
    assert result.returncode == 3, result.stderr
    venv_dir = sandbox.root / "venv"
    assert (venv_dir / "pyvenv.cfg").exists()
    assert sandbox.webui is not None
    assert Path(str(sandbox.webui["prefix"])).resolve() == venv_dir.resolve()
    assert len(sandbox.pip_calls) == 2


def test_launcher_module_skips_pip_when_stamped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The same guarantee, in-process: ensure_installed never reaches run_pip with a matching stamp."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("easel_launch_under_test", REPO / "launch.py")
    assert spec is not None and spec.loader is not None
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    calls: list[list[str]] = []
    monkeypatch.setattr(launch, "run_pip", lambda args: calls.append(list(args)))
    monkeypatch.setenv("EASEL_INSTALL_STAMP", str(tmp_path / "stamp"))
    monkeypatch.delenv("TORCH_COMMAND", raising=False)
    assert launch.ensure_installed(test=False, reinstall=False, use_directml=False, use_cpu=False) is True
    assert calls and calls[0][0] == "torch==2.13.0"
    calls.clear()
    assert launch.ensure_installed(test=False, reinstall=False, use_directml=False, use_cpu=False) is False
    assert calls == []


@pytest.mark.skipif(not (REPO / "webui.py").exists(), reason="webui.py not written yet")
def test_real_help_lists_the_flags() -> None:
    result = subprocess.run([sys.executable, str(REPO / "launch.py"), "--skip-install", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for flag in ("--port", "--listen", "--data-dir", "--skip-install", "--use-cpu"):
        assert flag in result.stdout


LINUX_X86 = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}
LINUX_ARM = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"}
WINDOWS_X64 = {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64"}
WINDOWS_ARM = {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "ARM64"}
MAC_ARM = {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"}
OTHER = {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "ppc64le"}


def _packages_for(requirements: Path, environment: dict[str, str]) -> set[str]:
    """What ``pip install -r requirements`` installs on a platform: names whose markers hold there."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({**default_environment(), **environment}):
            names.add(requirement.name)
    return names


@pytest.mark.parametrize("environment, backends", [
    (LINUX_X86, {"onnxruntime", "openvino"}), (LINUX_ARM, {"onnxruntime", "openvino"}),
    (WINDOWS_X64, {"onnxruntime", "openvino"}), (MAC_ARM, {"onnxruntime", "openvino"}),
    (WINDOWS_ARM, {"onnxruntime"}), (OTHER, set()),
])
def test_fresh_install_includes_the_cpu_backends_where_they_run(sandbox: Sandbox, environment: dict[str, str],
                                                                 backends: set[str]) -> None:
    """The launcher's plain start installs requirements.txt, which brings ONNX Runtime and OpenVINO (and onnx, the
    exporter's format) on every platform that has their wheels, and asks for nothing where there are none."""
    shutil.copy(REPO / "requirements.txt", sandbox.root / "requirements.txt")
    assert sandbox.run().returncode == 3
    files = [Path(call[call.index("-r") + 1]) for call in sandbox.pip_calls if "-r" in call]
    assert files == [sandbox.root / "requirements.txt"]
    installed = _packages_for(files[0], environment)
    assert installed & {"onnxruntime", "openvino"} == backends
    assert ("onnx" in installed) == ("onnxruntime" in backends)
    assert {"torch", "diffusers"} <= installed
    assert not installed & {"bitsandbytes", "torchao"}, "heavy optional quantizers stay out of a fresh install"


def test_dev_requirements_do_not_repeat_the_runtime_backends() -> None:
    """One place decides the backends' versions: requirements.txt (the test install adds dev tools on top)."""
    dev = _packages_for(REPO / "requirements-dev.txt", LINUX_X86)
    assert not dev & {"onnx", "onnxruntime", "openvino"}
