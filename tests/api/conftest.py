"""A real uvicorn server on a free port, over real services and the tiny ``tiny-sd`` model (64x64, CPU).

One generation server is shared by the whole API test session (warming it up costs seconds); tests that need
other launch flags start their own light server (no warm-up, no model) with :func:`start_server`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import webui
from modules.core.settings import Settings


@dataclass
class RunningServer:
    services: Any
    app: Any
    server: Any
    thread: threading.Thread
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=120.0, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def start_server(services: Any, app: Any | None = None) -> RunningServer:
    """Serve ``app`` (built from ``services`` if not given) on a free port; returns once it accepts requests."""
    import uvicorn

    app = app if app is not None else webui.create_app(services)
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and without it a
    # keep-alive client waits ~40 ms (Nagle + delayed ACK) for every response written in two parts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2, lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    if services.lifecycle.server is None:
        services.lifecycle.server = server
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return RunningServer(services, app, server, thread, port)


def make_services(data_dir: Path, models_dir: Path, extra: Sequence[str] = ()) -> Any:
    settings = Settings.load(["--data-dir", str(data_dir), "--models-dir", str(models_dir), "--nowebui", *extra], {})
    return webui.build_services(settings)


def shutdown(running: RunningServer) -> None:
    running.stop()
    running.services.queue.stop(5)
    running.services.job_store.close()


@pytest.fixture(scope="session")
def single_threaded_torch() -> Iterator[None]:
    """Torch runs single-threaded in these tests: on a shared 2-core machine under load, two OpenMP threads spend
    most of their time waiting for each other at every op's barrier (measured: 0.3-0.5 s per tiny job with one
    thread, 2-20 s with two). Restored afterwards for the rest of the session."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def easel(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path,
          single_threaded_torch: None) -> Iterator[RunningServer]:
    """The shared generation server: warmed up, tiny-sd loaded, worker running."""
    services = make_services(tmp_path_factory.mktemp("api-data"), tiny_models_dir)
    app = webui.create_app(services)
    services.queue.start()
    warm = threading.Thread(target=webui.warm_up, args=(services,), name="easel-warmup", daemon=True)
    running = start_server(services, app)
    warm.start()
    warm.join(180)
    assert services.ready.is_set() and services.startup_error is None, services.startup_error
    assert services.manager.current is not None, "tiny-sd did not load"
    yield running
    shutdown(running)


@pytest.fixture()
def client(easel: RunningServer) -> Iterator[httpx.Client]:
    with easel.client() as http:
        yield http


def small_txt2img(**overrides: Any) -> dict[str, Any]:
    """A fast request for tiny-sd: 64x64, 2 steps, fixed seed."""
    return {"prompt": "a red circle", "width": 64, "height": 64, "steps": 2, "seed": 1234, **overrides}


def wait_status(http: httpx.Client, job_id: str, wanted: set[str], timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/sdapi/v2/jobs/{job_id}").json()
        if job["status"] in wanted:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s, wanted {wanted}")
        time.sleep(0.05)


def wait_idle(http: httpx.Client, timeout: float = 60.0) -> None:
    """Until no job is queued or running (tests that cancel or interrupt leave the queue clean for the next)."""
    deadline = time.monotonic() + timeout
    while http.get("/sdapi/v2/jobs", params={"status": "queued,running"}).json()["count"]:
        if time.monotonic() > deadline:
            raise AssertionError("the queue did not drain")
        time.sleep(0.05)


class ApiHelpers:
    """The helpers above, handed to tests as a fixture (test modules cannot import conftest under importlib)."""

    start_server = staticmethod(start_server)
    make_services = staticmethod(make_services)
    shutdown = staticmethod(shutdown)
    small_txt2img = staticmethod(small_txt2img)
    wait_status = staticmethod(wait_status)
    wait_idle = staticmethod(wait_idle)


@pytest.fixture(scope="session")
def api() -> type[ApiHelpers]:
    return ApiHelpers
