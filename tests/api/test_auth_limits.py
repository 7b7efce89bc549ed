"""Launch-flag behaviour on light servers (no warm-up, no model): auth, request-size limit, CORS, server-stop."""

from __future__ import annotations

import httpx
import pytest


@pytest.fixture(scope="module")
def api_auth_server(tmp_path_factory, tiny_models_dir, api):
    services = api.make_services(tmp_path_factory.mktemp("auth-data"), tiny_models_dir, [
        "--api-auth", "alice:secret,bob:pa:ss", "--max-request-mb", "1", "--cors-allow-origins",
        "http://allowed.example", "--api-server-stop"])
    services.ready.set()  # a light server: no warm-up will come, nothing to wait for
    running = api.start_server(services)
    yield running
    api.shutdown(running)


@pytest.fixture(scope="module")
def full_auth_server(tmp_path_factory, tiny_models_dir, api):
    services = api.make_services(tmp_path_factory.mktemp("fullauth-data"), tiny_models_dir, ["--auth", "carol:pw"])
    services.ready.set()
    running = api.start_server(services)
    yield running
    api.shutdown(running)


def test_api_auth_guards_every_api_route(api_auth_server):
    with httpx.Client(base_url=api_auth_server.base_url, timeout=30) as http:
        for path in ("/sdapi/v1/options", "/sdapi/v1/progress", "/sdapi/v2/jobs"):
            response = http.get(path)
            assert response.status_code == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Basic")
            assert response.json()["error"] == "Unauthorized"
        assert http.get("/sdapi/v1/options", auth=("alice", "wrong")).status_code == 401
        assert http.get("/sdapi/v1/options", auth=("mallory", "secret")).status_code == 401
        assert http.get("/sdapi/v1/options", auth=("alice", "secret")).status_code == 200
        assert http.get("/sdapi/v1/options", auth=("bob", "pa:ss")).status_code == 200  # ':' inside a password
        # --api-auth covers every route but the UI page, the UI's /internal routes included
        assert http.get("/internal/ping").status_code == 401


def test_request_size_limit_cors_and_server_stop(api_auth_server):
    auth = ("alice", "secret")
    with httpx.Client(base_url=api_auth_server.base_url, timeout=30, auth=auth) as http:
        response = http.post("/sdapi/v1/png-info", json={"image": "A" * (2 << 20)})
        assert response.status_code == 413
        assert response.json()["error"] == "RequestTooLarge" and "--max-request-mb" in response.json()["detail"]

        def chunks():  # no Content-Length: the limit applies while the body streams in
            for _ in range(3):
                yield b"A" * (600 << 10)

        response = http.post("/sdapi/v1/options", content=chunks(), headers={"content-type": "application/json"})
        assert response.status_code == 413

        preflight = http.options("/sdapi/v1/options", headers={
            "Origin": "http://allowed.example", "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://allowed.example"
        other = http.get("/sdapi/v1/options", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers

        assert http.post("/sdapi/v1/server-stop").status_code == 200
    api_auth_server.thread.join(10)
    assert not api_auth_server.thread.is_alive(), "server-stop did not stop the server"


def test_full_auth_guards_ui_and_api(full_auth_server):
    with httpx.Client(base_url=full_auth_server.base_url, timeout=30) as http:
        for path in ("/", "/sdapi/v1/options", "/internal/ping", "/docs"):
            assert http.get(path).status_code == 401, path
            assert http.get(path, auth=("carol", "nope")).status_code == 401, path
        assert http.get("/sdapi/v1/options", auth=("carol", "pw")).status_code == 200
        assert http.get("/", auth=("carol", "pw")).status_code == 404  # authenticated; no UI mounted (--nowebui)
        assert http.get("/docs", auth=("carol", "pw")).status_code == 200
        response = http.post("/sdapi/v1/server-stop", auth=("carol", "pw"))
        assert response.status_code == 403 and "--api-server-stop" in response.json()["detail"]


def test_unhandled_errors_are_json_500_with_request_id(full_auth_server):
    app = full_auth_server.app

    @app.get("/boom-for-test")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    with httpx.Client(base_url=full_auth_server.base_url, timeout=30, auth=("carol", "pw")) as http:
        response = http.get("/boom-for-test")
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == "internal error" and body["request_id"] == response.headers["X-Request-Id"]
    assert "kaboom" not in response.text
