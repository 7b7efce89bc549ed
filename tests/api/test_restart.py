"""Restart: jobs queued while no worker runs survive a server stop and run, in order, after the next start."""

from __future__ import annotations

import threading

import webui


def test_queued_jobs_survive_a_restart(tmp_path, tiny_models_dir, api, single_threaded_torch):
    data_dir = tmp_path / "data"
    # First life: the server accepts jobs, but no worker runs (as if it stopped before reaching them).
    services = api.make_services(data_dir, tiny_models_dir)
    running = api.start_server(services)
    webui.warm_up(services, load_model=False)  # submissions wait for the warm-up (script names are checked)
    ids = []
    with running.client() as http:
        for seed in (1, 2, 3):
            body = {"type": "txt2img", "params": api.small_txt2img(steps=1, seed=seed, send_images=False)}
            response = http.post("/sdapi/v2/jobs", json=body)
            assert response.status_code == 202
            ids.append(response.json()["id"])
        assert [job["id"] for job in http.get("/sdapi/v2/jobs", params={"status": "queued"}).json()["jobs"]] == ids
        assert http.get(f"/sdapi/v2/jobs/{ids[2]}").json()["position"] == 3
    api.shutdown(running)

    # Second life on the same data dir: the queue is intact and drains in FIFO order.
    services = api.make_services(data_dir, tiny_models_dir)
    running = api.start_server(services)
    try:
        with running.client() as http:
            listed = http.get("/sdapi/v2/jobs", params={"status": "queued"}).json()["jobs"]
            assert [job["id"] for job in listed] == ids
            services.queue.start()
            warm = threading.Thread(target=webui.warm_up, args=(services,), daemon=True)
            warm.start()
            finals = [services.queue.wait(job_id, timeout=180) for job_id in ids]
            assert [job.status.value for job in finals] == ["succeeded"] * 3, [job.error for job in finals]
            assert finals[0].finished_at <= finals[1].started_at and finals[1].finished_at <= finals[2].started_at
            view = http.get(f"/sdapi/v2/jobs/{ids[0]}").json()
            assert view["status"] == "succeeded" and len(view["result"]["images"]) == 1
            warm.join(60)
    finally:
        api.shutdown(running)


def test_server_restart_starts_the_same_command_again(tmp_path):
    """``/sdapi/v1/server-restart`` stops the server and runs the same command line again (same PID, re-exec)."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path / "server.log"
    root = Path(webui.__file__).resolve().parent
    command = [sys.executable, str(root / "webui.py"), "--nowebui", "--api-server-stop", "--port", str(port),
               "--data-dir", str(tmp_path / "data"), "--models-dir", str(tmp_path / "models")]
    url = f"http://127.0.0.1:{port}/sdapi/v1/samplers"

    def wait_until(answering: bool, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                up = httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                up = False
            if up == answering:
                return
            time.sleep(0.1)
        raise AssertionError(f"server never {'answered' if answering else 'stopped'}; log:\n{log_path.read_text()}")

    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        try:
            wait_until(True)
            assert httpx.post(f"http://127.0.0.1:{port}/sdapi/v1/server-restart", timeout=5).status_code == 200
            wait_until(False)
            wait_until(True)
            assert process.poll() is None  # the same process, re-executed
            assert log_path.read_text().count("Easel serving on") == 2
        finally:
            process.terminate()
            process.wait(timeout=20)
