"""Who may call what: ``--auth`` guards every route, ``--api-auth`` every route but the UI page, failed logins are
throttled per client and logged without the password, cross-site requests that change state are refused, and
``--listen`` without a login is announced loudly.

The apps here are the real Easel app with a Gradio Blocks mounted at ``/`` the way the UI is (so the Gradio
routes are the real ones); requests go through Starlette's ``TestClient``, which also lets a test pick the client
address.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

import webui
from modules.api import auth, middleware
from tests.api.conftest import make_services
from tests.api.routes import http_endpoints

UI_PAGE_ROUTES = {("GET", "/"), ("HEAD", "/"), ("GET", "/config"), ("GET", "/config/"), ("GET", "/theme.css"),
                  ("GET", "/favicon.ico"), ("GET", "/robots.txt"), ("GET", "/manifest.json"), ("GET", "/pwa_icon"),
                  ("GET", "/pwa_icon/x"), ("GET", "/static/x"), ("GET", "/assets/x"), ("GET", "/svelte/x")}


def _build(tmp_path: Path, tiny_models_dir: Path, flags: list[str]) -> Any:
    import gradio as gr

    services = make_services(tmp_path / "data", tiny_models_dir, ["--api-server-stop", *flags])
    app = webui.create_app(services)
    with gr.Blocks() as blocks:
        text = gr.Textbox()
        gr.Button().click(lambda value: value, text, text)
    gr.mount_gradio_app(app, blocks, path="/")
    return app


def _client(app: Any, address: str = "10.0.0.1") -> httpx.Client:
    from starlette.testclient import TestClient

    return TestClient(app, client=(address, 40000), raise_server_exceptions=False)


@pytest.fixture(autouse=True)
def fast_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(middleware, "READY_WAIT_SECONDS", 0.01)  # no warm-up here: answer 503 at once


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path) -> list[tuple[str, str]]:
    app = _build(tmp_path_factory.mktemp("routes"), tiny_models_dir, [])
    found = sorted(set(http_endpoints(app.routes)))
    paths = {path for _, path in found}
    for expected in ("/sdapi/v1/txt2img", "/sdapi/v2/jobs", "/internal/ping", "/controlnet/detect", "/docs",
                     "/gradio_api/info", "/config"):
        assert expected in paths, expected
    return found


@pytest.mark.parametrize("flag", ["--auth", "--api-auth"])
def test_every_route_needs_the_login(tmp_path: Path, tiny_models_dir: Path, endpoints: list[tuple[str, str]],
                                     flag: str) -> None:
    app = _build(tmp_path, tiny_models_dir, [flag, "alice:secret"])
    open_routes = set() if flag == "--auth" else UI_PAGE_ROUTES
    with _client(app) as client:
        for method, path in endpoints:
            answer = client.request(method, path)
            where = f"{flag}: {method} {path} -> {answer.status_code}"
            if (method, path) in open_routes:
                assert answer.status_code != 401, where
            else:
                assert answer.status_code == 401, where
                assert answer.headers["www-authenticate"].startswith("Basic"), where
        for method, path in endpoints:  # the right login passes everywhere (reads only: writes would act)
            if method in ("GET", "HEAD") and not path.startswith("/sdapi/v1/server-"):
                answer = client.request(method, path, auth=("alice", "secret"))
                assert answer.status_code not in (401, 403, 429), f"{flag}: {method} {path} -> {answer.status_code}"


def test_failed_logins_are_throttled_per_client_and_logged(tmp_path: Path, tiny_models_dir: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    app = _build(tmp_path, tiny_models_dir, ["--api-auth", "alice:secret"])
    caplog.set_level(logging.WARNING, logger="easel.auth")
    with _client(app, "10.0.0.7") as attacker, _client(app, "10.0.0.8") as other:
        statuses = [attacker.get("/sdapi/v1/cmd-flags", auth=("alice", f"guess{n}")).status_code
                    for n in range(auth.MAX_FAILURES)]
        assert statuses == [401] * auth.MAX_FAILURES
        locked = attacker.get("/sdapi/v1/cmd-flags", auth=("alice", "guess-again"))
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= auth.LOCKOUT_SECONDS - 1
        # while locked out even the right password is not checked, and a wrong one is not counted
        assert attacker.get("/sdapi/v1/cmd-flags", auth=("alice", "secret")).status_code == 429
        # another client is not affected
        assert other.get("/sdapi/v1/cmd-flags", auth=("alice", "secret")).status_code == 200
        # a request without credentials is a plain 401 (the browser's first try), not a throttled failure
        assert other.get("/sdapi/v1/cmd-flags").status_code == 401
    failures = [record.getMessage() for record in caplog.records if "failed login" in record.getMessage()]
    assert len(failures) == auth.MAX_FAILURES
    assert "'alice'" in failures[0] and "10.0.0.7" in failures[0] and "locked out" in failures[-1]
    assert not any("guess" in record.getMessage() for record in caplog.records)


def test_the_lockout_grows_and_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    throttle = auth.LoginThrottle(clock=lambda: now[0])
    lockouts = [throttle.failed("c") for _ in range(auth.MAX_FAILURES)]
    assert lockouts[:-1] == [0.0] * (auth.MAX_FAILURES - 1) and lockouts[-1] == auth.LOCKOUT_SECONDS
    now[0] += auth.LOCKOUT_SECONDS
    assert throttle.retry_after("c") == 0
    assert [throttle.failed("c") for _ in range(auth.MAX_FAILURES)][-1] == 2 * auth.LOCKOUT_SECONDS
    throttle.succeeded("c")
    assert throttle.retry_after("c") == 0


@pytest.mark.parametrize("path", ["/sdapi/v1/interrupt", "/sdapi/v1/unload-checkpoint", "/sdapi/v1/options",
                                  "/sdapi/v2/jobs"])
def test_cross_site_requests_that_change_state_are_refused(tmp_path: Path, tiny_models_dir: Path,
                                                           path: str) -> None:
    app = _build(tmp_path, tiny_models_dir, ["--cors-allow-origins", "http://allowed.example"])
    services = app.state.services
    services.ready.set()
    with _client(app) as client:
        forged = [
            client.post(path, content=b"{}", headers={"Origin": "http://evil.example", "content-type": "text/plain"}),
            client.post(path, content=b"{}", headers={"Sec-Fetch-Site": "cross-site"}),
            client.post(path, content=b"{}", headers={"Origin": "null", "content-type": "application/json"}),
            client.post(path, content=b"{}", headers={"content-type": "text/plain"}),  # no Origin (old browsers)
            client.post(path, content=b"a=1", headers={"content-type": "application/x-www-form-urlencoded"}),
        ]
        assert [answer.status_code for answer in forged] == [403, 403, 403, 415, 415], path
        assert services.queue.pending_ids() == []  # nothing was queued (the unload) or changed
        if path == "/sdapi/v1/interrupt":
            for headers in ({}, {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
                            {"Origin": "http://allowed.example"}):
                assert client.post(path, json={}, headers=headers).status_code == 200, headers


def test_listen_without_a_login_is_announced(tmp_path: Path, tiny_models_dir: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    _build(tmp_path / "a", tiny_models_dir, ["--listen"])
    assert any("--listen without --auth" in record.getMessage() and record.levelno == logging.WARNING
               for record in caplog.records)
    caplog.clear()
    _build(tmp_path / "b", tiny_models_dir, ["--listen", "--auth", "u:p"])
    _build(tmp_path / "c", tiny_models_dir, [])
    assert not any("--listen" in record.getMessage() for record in caplog.records)

