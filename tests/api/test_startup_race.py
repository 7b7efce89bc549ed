"""The start-up race: while the warm-up runs, every route answers what it will answer afterwards, or 503 with
``Retry-After`` (after a short wait), never an empty script list, a 500 or an unchecked job.

The warm-up is held right before it loads the scripts and extensions, the routes are hammered from several
threads, then it is released; the answers given during the warm-up are compared with the same requests' answers
after it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import webui
from modules.api import middleware
from tests.api.conftest import make_services, shutdown, start_server
from tests.api.routes import app_routes

VOLATILE = {"/sdapi/v1/progress", "/sdapi/v1/memory", "/sdapi/v2/jobs", "/internal/pending-tasks"}
UNSAFE = {"/sdapi/v1/server-stop", "/sdapi/v1/server-restart", "/sdapi/v1/server-kill"}
BAD_SCRIPT = {"type": "txt2img", "params": {"prompt": "x", "script_name": "no such script", "steps": 1}}
GOOD_JOB = {"type": "txt2img", "params": {"prompt": "x", "steps": 1, "width": 64, "height": 64}}


def _requests(app: Any) -> list[tuple[str, str, Any]]:
    """Every GET route without path parameters (the ones safe to repeat), plus job submissions."""
    from fastapi.routing import APIRoute

    found: list[tuple[str, str, Any]] = []
    for path, route in app_routes(app.routes):
        if isinstance(route, APIRoute) and "GET" in route.methods and "{" not in path and path not in UNSAFE:
            found.append(("GET", path, None))
    assert len(found) > 20
    found += [("POST", "/sdapi/v2/jobs", BAD_SCRIPT), ("POST", "/sdapi/v2/jobs", GOOD_JOB),
              ("POST", "/sdapi/v1/txt2img", {**GOOD_JOB["params"], "script_name": "no such script"})]
    return found


def test_routes_wait_or_answer_503_during_the_warm_up(tmp_path: Path, tiny_models_dir: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from modules.extensions import setup

    monkeypatch.setattr(middleware, "READY_WAIT_SECONDS", 0.3)
    release = threading.Event()
    install: Callable[..., Any] = setup.build_extension_services

    def slow_install(*args: Any, **kwargs: Any) -> Any:
        release.wait(60)
        return install(*args, **kwargs)

    monkeypatch.setattr(setup, "build_extension_services", slow_install)
    services = make_services(tmp_path / "data", tiny_models_dir)
    app = webui.create_app(services)
    running = start_server(services, app)
    warm = threading.Thread(target=webui.warm_up, args=(services,), kwargs={"load_model": False}, daemon=True)
    warm.start()
    requests = _requests(app)
    during: list[tuple[tuple[str, str, Any], httpx.Response]] = []
    lock = threading.Lock()

    def hammer(offset: int) -> None:
        with running.client() as client:
            deadline = time.monotonic() + 1.5
            index = offset
            while time.monotonic() < deadline or not services.ready.is_set():
                method, path, body = requests[index % len(requests)]
                answer = client.request(method, path, json=body)
                with lock:
                    during.append(((method, path, body), answer))
                index += 1
                if time.monotonic() > deadline + 20:
                    return

    threads = [threading.Thread(target=hammer, args=(n * 7,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    release.set()
    for thread in threads:
        thread.join(60)
    warm.join(60)
    try:
        assert services.ready.is_set() and services.startup_error is None, services.startup_error
        with running.client() as client:
            after = {(method, path, repr(body)): client.request(method, path, json=body)
                     for method, path, body in requests if method == "GET"}
            assert after[("GET", "/sdapi/v1/scripts", "None")].json()["txt2img"], "no scripts after the warm-up"
    finally:
        shutdown(running)

    statuses = [answer.status_code for _, answer in during]
    assert statuses.count(503) > 0 and len(statuses) > statuses.count(503)  # both outcomes happened
    for (method, path, body), answer in during:
        where = f"{method} {path} -> {answer.status_code}: {answer.text[:200]}"
        assert answer.status_code < 500 or answer.status_code == 503, where
        if answer.status_code == 503:
            assert int(answer.headers["retry-after"]) > 0, where
            continue
        if method == "POST":
            expected = 202 if body is GOOD_JOB else 422
            assert answer.status_code == expected, where
            if expected == 422:
                assert "script_name" in answer.text, where
            continue
        reference = after[(method, path, "None")]
        assert answer.status_code == reference.status_code, where
        if path not in VOLATILE:
            assert answer.content == reference.content, where
