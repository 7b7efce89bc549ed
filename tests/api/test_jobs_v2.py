"""``/sdapi/v2``: submit, read, list, result images, SSE, cancel, and 8 concurrent clients on one FIFO queue."""

from __future__ import annotations

import json
import subprocess
import sys

from PIL import Image


def test_submit_read_and_fetch_images(client, api):
    response = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "params": api.small_txt2img(batch_size=2)})
    assert response.status_code == 202
    submitted = response.json()
    assert set(submitted) == {"id", "status", "position"} and submitted["status"] == "queued"
    job = api.wait_status(client, submitted["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    assert job["type"] == "txt2img" and job["source"] == "api-v2" and job["position"] is None
    assert job["attempt"] == 1 and job["worker"] == "local"
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


def test_workers_lists_the_in_process_worker(client, api):
    import os

    api.wait_idle(client)
    before = client.get("/sdapi/v2/workers").json()["workers"]
    assert [(worker["id"], worker["state"], worker["pid"]) for worker in before] == [("local", "idle", os.getpid())]
    assert before[0]["current_job"] is None and before[0]["restarts"] == 0
    job = client.post("/sdapi/v2/jobs", json={"type": "txt2img", "params": api.small_txt2img(steps=1)}).json()
    api.wait_status(client, job["id"], {"succeeded"})
    api.wait_idle(client)
    after = client.get("/sdapi/v2/workers").json()["workers"]
    assert after[0]["jobs_done"] == before[0]["jobs_done"] + 1


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


POLLER = """
import json, sys, time, pathlib, httpx
base, stop = sys.argv[1], pathlib.Path(sys.argv[2])
samples = []
with httpx.Client(base_url=base, timeout=30) as http:
    http.get("/sdapi/v1/progress")
    print("ready", flush=True)
    while not stop.exists():
        began = time.perf_counter()
        response = http.get("/sdapi/v1/progress")
        samples.append([time.perf_counter() - began, float(response.headers["X-Process-Time"]), response.status_code])
        time.sleep(0.01)
print(json.dumps(samples), flush=True)
"""

SUBMITTERS = """
import json, sys, threading, httpx
base, clients, per_client, params = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
submitted, errors, lock = [], [], threading.Lock()
barrier = threading.Barrier(clients)

def submitter(n):
    with httpx.Client(base_url=base, timeout=60) as http:
        barrier.wait()
        for index in range(per_client):
            body = {"type": "txt2img", "params": {**params, "seed": n * 100 + index}}
            response = http.post("/sdapi/v2/jobs", json=body)
            with lock:
                if response.status_code == 202:
                    submitted.append([n, response.json()["id"]])
                else:
                    errors.append(response.text)

threads = [threading.Thread(target=submitter, args=(n,)) for n in range(clients)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"submitted": submitted, "errors": errors}), flush=True)
"""


def test_eight_clients_forty_jobs_fifo_and_fast_progress(easel, client, api, tmp_path):
    """8 client threads submit 40 jobs at once while another client polls progress; all run, FIFO, none lost.

    The clients run in their own processes, as real clients do: client threads inside the server's process
    would compete with it for the GIL, and the poll times would measure that contention, not the server.
    """
    params = api.small_txt2img(steps=1, send_images=False)
    stop_file = tmp_path / "stop"
    poller = subprocess.Popen([sys.executable, "-c", POLLER, easel.base_url, str(stop_file)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert poller.stdout is not None and poller.stdout.readline().strip() == "ready"
        done = subprocess.run([sys.executable, "-c", SUBMITTERS, easel.base_url, "8", "5", json.dumps(params)],
                              capture_output=True, text=True, timeout=120, check=True)
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        assert outcome["errors"] == []
        submitted = [(n, job_id) for n, job_id in outcome["submitted"]]
        for _, job_id in submitted:
            easel.services.queue.wait(job_id, timeout=240)
    finally:
        stop_file.touch()
        output, _ = poller.communicate(timeout=30)
    samples = json.loads(output.strip().splitlines()[-1])
    assert len(submitted) == 40 and len({job_id for _, job_id in submitted}) == 40
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
    # Progress times. The server's own handling time (X-Process-Time, from the first middleware to the response
    # head) must stay under 100 ms on every poll. The time the polling client sees also contains the OS
    # scheduler's delays: on this shared, overloaded 2-core machine even an idle server shows a few 100-200 ms
    # outliers in 500 polls, so the client side is held to its 95th percentile (and a loose worst case).
    assert len(samples) > 20 and all(status == 200 for _, _, status in samples)
    client_times = sorted(latency for latency, _, _ in samples)
    server_worst = max(server for _, server, _ in samples)
    p95 = client_times[int(len(client_times) * 0.95)]
    slow = [(round(latency * 1000), round(server * 1000, 1)) for latency, server, _ in samples if latency > 0.05]
    print(f"progress: {len(samples)} polls; server worst {server_worst * 1000:.1f} ms; client p95 "
          f"{p95 * 1000:.0f} ms, worst {client_times[-1] * 1000:.0f} ms; over 50 ms (client, server ms): {slow}")
    assert server_worst < 0.1, f"progress handling took {server_worst * 1000:.0f} ms: {slow}"
    assert p95 < 0.1 and client_times[-1] < 1.0, slow


def test_saved_sample_and_result_file_are_one_encoding_and_timed(client, api, easel):
    """With save_images the sample in outputs/ and the job's result file are the same bytes, compressed once; the
    job's result says where its time went."""
    encoder = easel.services.generation.image_store.encoder
    hits = encoder.hits
    response = client.post("/sdapi/v2/jobs", json={"type": "txt2img",
                                                    "params": api.small_txt2img(save_images=True, seed=77)})
    job = api.wait_status(client, response.json()["id"], {"succeeded", "failed"})
    assert job["status"] == "succeeded", job["error"]
    result_bytes = client.get(job["result"]["images"][0]).content
    saved = [path for path in easel.services.image_store.root.rglob("*.png") if "Seed: 77," in
             Image.open(path).info.get("parameters", "")]
    assert len(saved) == 1 and saved[0].read_bytes() == result_bytes
    assert encoder.hits == hits + 1
    timings = job["result"]["timings"]
    assert 0 < timings["saving_s"] <= timings["total_s"] and timings["generate_s"] <= timings["total_s"]
