"""``/sdapi/v2``: submit, read, list, result images, SSE, cancel, and 8 concurrent clients on one FIFO queue."""

from __future__ import annotations

import json
import threading
import time

from PIL import Image


def test_submit_read_and_fetch_images(client, api):
    response = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "params": api.small_txt2img(batch_size=2)})
    assert response.status_code == 202
    submitted = response.json()
    assert set(submitted) == {"id", "status", "position"} and submitted["status"] == "queued"
    job = api.wait_status(client, submitted["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    assert job["type"] == "txt2img" and job["source"] == "api-v2" and job["position"] is None
    assert job["progress"] == 1.0 and job["params"]["width"] == 64
    urls = job["result"]["images"]
    assert urls == [f"/sdapi/v2/jobs/{job['id']}/images/0", f"/sdapi/v2/jobs/{job['id']}/images/1"]
    image_response = client.get(urls[1])
    assert image_response.status_code == 200 and image_response.headers["content-type"] == "image/png"
    import io

    image = Image.open(io.BytesIO(image_response.content))
    assert image.size == (64, 64) and "Seed: 1235" in image.info["parameters"]
    assert client.get(f"/sdapi/v2/jobs/{job['id']}/images/2").status_code == 404
    assert client.get("/sdapi/v2/jobs/..%2F..%2Fconfig.json/images/0").status_code in (404, 422)
    assert client.get("/sdapi/v2/jobs/nope").status_code == 404
    assert client.delete(f"/sdapi/v2/jobs/{job['id']}").status_code == 409
    assert client.delete("/sdapi/v2/jobs/nope").status_code == 404
    listed = client.get("/sdapi/v2/jobs", params={"status": "succeeded", "newest_first": True}).json()["jobs"]
    assert listed[0]["id"] == job["id"] and all(item["status"] == "succeeded" for item in listed)
    assert client.get("/sdapi/v2/jobs", params={"status": "bogus"}).status_code == 422


def test_bare_payload_and_validation(client, api):
    response = client.post("/sdapi/v2/jobs", json={"type": "txt2img", **api.small_txt2img(steps=1)})
    assert response.status_code == 202
    api.wait_status(client, response.json()["id"], {"succeeded"})
    response = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "params": api.small_txt2img(height=100)})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["params.height"]
    response = client.post("/sdapi/v2/jobs", json={"type": "video", "params": {}})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["type"]


def test_sse_stream_reports_progress_and_ends_with_final_event(client, api):
    job_id = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "params": api.small_txt2img(steps=4)}).json()["id"]
    events = []
    with client.stream("GET", f"/sdapi/v2/jobs/{job_id}/events", params={"previews": 1}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(("id:", "event:", "data:")):
                key, _, value = line.partition(":")
                current[key] = value.strip()
            elif not line and "data" in current:
                events.append((current["event"], int(current["id"]), json.loads(current["data"])))
                current = {}
    names = [name for name, _, _ in events]
    assert names[-1] == "final" and names.count("final") == 1
    final = events[-1][2]
    assert final["status"] == "succeeded" and final["job"]["result"]["images"]
    steps = [data["step"] for name, _, data in events if name == "progress" and data["status"] == "running"]
    assert steps and max(steps) == 4 and steps == sorted(steps)
    assert [index for _, index, _ in events] == sorted(index for _, index, _ in events)
    assert any("preview" in data for _, _, data in events)  # the last step always carries a preview
    # a finished job: just its final event
    with client.stream("GET", f"/sdapi/v2/jobs/{job_id}/events") as response:
        body = response.read().decode()
    assert body.count("event: final") == 1 and "event: progress" not in body
    assert client.get("/sdapi/v2/jobs/unknown-job/events").status_code == 404


def test_cancel_running_and_queued_jobs(client, api):
    running = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "params": api.small_txt2img(steps=400)}).json()
    queued = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "params": api.small_txt2img(steps=400)}).json()
    api.wait_status(client, running["id"], {"running"})
    assert client.get(f"/sdapi/v2/jobs/{queued['id']}").json()["position"] == 1
    assert client.get("/internal/pending-tasks").json()["tasks"] == [queued["id"]]
    response = client.delete(f"/sdapi/v2/jobs/{queued['id']}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    response = client.delete(f"/sdapi/v2/jobs/{running['id']}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert client.delete(f"/sdapi/v2/jobs/{running['id']}").status_code == 409
    api.wait_idle(client)


def test_eight_clients_forty_jobs_fifo_and_fast_progress(easel, client, api):
    params = api.small_txt2img(steps=1, send_images=False)
    submitted: list[tuple[int, str]] = []  # (client, job id) in the order each client got its answers
    lock = threading.Lock()
    latencies: list[float] = []
    server_times: list[tuple[float, float, float]] = []
    stop = threading.Event()
    start = threading.Barrier(9)

    def poll_progress() -> None:
        with easel.client() as http:
            start.wait()
            while not stop.is_set():
                began = time.perf_counter()
                response = http.get("/sdapi/v1/progress")
                assert response.status_code == 200
                latencies.append(time.perf_counter() - began)
                server_times.append((began, float(response.headers["X-Process-Time"]), latencies[-1]))
                time.sleep(0.01)

    def submitter(n: int) -> None:
        with easel.client() as http:
            start.wait()
            for index in range(5):
                response = http.post("/sdapi/v2/jobs", json={"type": "txt2img",
                                                             "params": {**params, "seed": n * 100 + index}})
                assert response.status_code == 202, response.text
                with lock:
                    submitted.append((n, response.json()["id"]))

    import gc
    gc_times = []
    gc_start = {}
    def cb(phase, info):
        if phase == "start":
            gc_start["t"] = time.perf_counter()
        else:
            gc_times.append((info["generation"], round((time.perf_counter() - gc_start["t"]) * 1000)))
    gc.callbacks.append(cb)
    poller = threading.Thread(target=poll_progress)
    clients = [threading.Thread(target=submitter, args=(n,)) for n in range(8)]
    poller.start()
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(60)
    try:
        api.wait_idle(client, timeout=240)
    finally:
        stop.set()
        poller.join(10)
    assert len(submitted) == 40
    jobs = [client.get(f"/sdapi/v2/jobs/{job_id}").json() for _, job_id in submitted]
    assert all(job["status"] == "succeeded" for job in jobs), [job["error"] for job in jobs]
    by_seq = sorted(jobs, key=lambda job: job["seq"])
    for earlier, later in zip(by_seq, by_seq[1:]):
        assert earlier["finished_at"] <= later["started_at"], "jobs overlapped or ran out of order"
    assert [job["started_at"] for job in by_seq] == sorted(job["started_at"] for job in jobs)
    # FIFO as each client saw it: a client's later submission never runs before its earlier one
    seq_of = {job["id"]: job["seq"] for job in jobs}
    for n in range(8):
        mine = [seq_of[job_id] for client_no, job_id in submitted if client_no == n]
        assert len(mine) == 5 and mine == sorted(mine)
    assert len(latencies) > 20
    t0 = server_times[0][0]
    gc.callbacks.remove(cb)
    print("GC", [g for g in gc_times if g[0] == 2 or g[1] > 20])
    print("DEBUG", [(round(b - t0, 2), round(p * 1000, 1), round(lat * 1000)) for b, p, lat in server_times
                    if lat > 0.09])
    assert max(latencies) < 0.1, f"progress took {max(latencies) * 1000:.0f} ms at worst"
