"""How the server starts with and without the cluster flags."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from modules.core.settings import REPO_ROOT

START_WITHOUT_FLAGS = """
import json, sys
import webui
from modules.core.settings import Settings

settings = Settings.load(["--data-dir", sys.argv[1], "--models-dir", sys.argv[2], "--nowebui"], {})
services = webui.build_services(settings)
app = webui.create_app(services)
services.queue.start()
webui.start_background(services, app, with_ui=False).join(120)
job = services.queue.submit("unload-model", {})
final = services.queue.wait(job.id, timeout=60)
services.queue.stop()
print(json.dumps({"ray": "ray" in sys.modules, "status": final.status.value, "worker": final.worker,
                  "workers": [info.id for info in services.queue.workers()]}))
"""


@pytest.mark.slow  # a real start in a fresh interpreter, through the warm-up
def test_without_cluster_flags_ray_is_never_imported(tmp_path, tiny_models_dir):
    completed = subprocess.run([sys.executable, "-c", START_WITHOUT_FLAGS, str(tmp_path), str(tiny_models_dir)],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"ray": False, "status": "succeeded", "worker": "local", "workers": ["local"]}


@pytest.mark.ray
def test_workers_flag_puts_ray_workers_in_the_queue_and_lists_them(ray_cluster, tmp_path, tiny_models_dir):
    from fastapi.testclient import TestClient

    import webui
    from modules.core.settings import Settings
    from webui_worker import start_cluster_workers

    settings = Settings.load(["--data-dir", str(tmp_path), "--models-dir", str(tiny_models_dir), "--nowebui",
                              "--workers", "2"], {})
    services = webui.build_services(settings)
    app = webui.create_app(services)
    workers = start_cluster_workers(services)
    try:
        assert [worker.id for worker in workers] == ["ray-0", "ray-1"]
        services.ready.set()  # stands in for the warm-up, which this test does not need
        response = TestClient(app).get("/sdapi/v2/workers")
        assert response.status_code == 200, response.text
        listed = response.json()["workers"]
        assert [(worker["id"], worker["state"]) for worker in listed] == [("ray-0", "starting"), ("ray-1", "starting")]
    finally:
        services.queue.close_workers()
        services.job_store.close()
