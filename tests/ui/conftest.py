"""Fixtures for the UI tests: a real Easel server (API app + mounted UI) on a free port, and a headless browser."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    services: Any
    app: Any
    server: Any
    thread: threading.Thread


def _create_app(services: Any) -> Any:
    """``webui.create_app`` once the API app exists; a bare FastAPI app until then."""
    try:
        import modules.api.app  # noqa: F401
    except ImportError:
        from fastapi import FastAPI

        return FastAPI()
    import webui

    return webui.create_app(services)


@contextlib.contextmanager
def run_server(argv: list[str], *, timeout: float = 180.0,
               extension_roots: list[Path] | None = None) -> Iterator[RunningServer]:
    import uvicorn

    import webui
    from modules.core.settings import Settings

    port = free_port()
    settings = Settings.load([*argv, "--port", str(port)], {})
    services = webui.build_services(settings)
    if extension_roots is not None:
        services.extension_roots = extension_roots
    app = _create_app(services)
    services.queue.start()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="easel-test-server", daemon=True)
    thread.start()
    warmup = webui.start_background(services, app, with_ui=True)
    deadline = time.monotonic() + timeout
    while not (services.ui_mounted and server.started):
        if not warmup.is_alive() and not services.ui_mounted:
            raise RuntimeError(f"the UI could not be mounted (startup error: {services.startup_error}; see the log)")
        if time.monotonic() > deadline:
            raise TimeoutError("the UI was not mounted in time (see the log for the warm-up error)")
        time.sleep(0.2)
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", services, app, server, thread)
    finally:
        server.should_exit = True
        thread.join(10)
        services.queue.stop(5)
        services.job_store.close()


@pytest.fixture(scope="module")
def models_dir_two(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny models dir plus a second tiny model (``tiny-sd-2``, other weights) for model switching."""
    from tests.conftest import build_tiny_sd

    target = tiny_models_dir / "Stable-diffusion" / "tiny-sd-2"
    if not target.exists():
        build_tiny_sd(target, seed=1)
    return tiny_models_dir


@pytest.fixture(scope="module")
def easel_server(models_dir_two: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("ui-data")
    with run_server(["--data-dir", str(data), "--models-dir", str(models_dir_two), "--use-cpu",
                     "--ckpt", "tiny-sd"]) as running:
        yield running


def require_browser() -> Any:
    """The playwright sync API, or a clean skip naming what is missing."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright python package")
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = require_browser()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
        instance = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()
