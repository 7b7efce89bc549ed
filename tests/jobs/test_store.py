"""The SQLite job store: restart policy, durability across reopen, retention."""

from __future__ import annotations

import sqlite3

import pytest

from modules.jobs import Job, JobQueue, JobStatus, JobStore


def test_restart_returns_the_running_job_to_the_head_of_the_queue(tmp_path, make_queue, runner):
    queue = make_queue()
    running = queue.submit("txt2img", {"steps": 100, "pause_at": [0, 1]}, source="api-v2")
    assert runner.reached.wait(5)
    queued = [queue.submit("txt2img", {"steps": 1, "n": n}, source="ui") for n in range(3)]

    # A crash: the process is gone without stop() and the OS has dropped its file lock; a new server opens the
    # same file. (This process still holds the lock, hence exclusive=False to stand in for the new one.)
    with pytest.raises(RuntimeError, match="in use by another Easel process"):
        JobStore(tmp_path / "queue.sqlite3").open()
    store = JobStore(tmp_path / "queue.sqlite3", exclusive=False).open()
    assert [job.id for job in store.recovered] == [running.id]
    released = store.get(running.id)
    assert released.status is JobStatus.QUEUED and released.attempt == 1 and released.started_at is None
    assert [job.id for job in store.list(JobStatus.QUEUED)] == [running.id] + [job.id for job in queued]
    assert [job.payload for job in store.list(JobStatus.QUEUED)][1:] == [{"steps": 1, "n": n} for n in range(3)]
    assert {job.source for job in store.list(JobStatus.QUEUED)} == {"api-v2", "ui"}

    # The old process is really gone: stop its worker before its runner could take another job.
    queue.stop(timeout=0)
    runner.proceed.set()
    queue.stop(timeout=5)
    queue.store.close()

    executed: list[str] = []
    restarted = JobQueue(store, lambda job, ctx: executed.append(job.id) or {"ok": True})
    assert restarted.pending_ids() == [running.id] + [job.id for job in queued]
    assert restarted.position(queued[0].id) == 2
    restarted.start()
    try:
        finals = [restarted.wait(job.id, timeout=5) for job in [running, *queued]]
    finally:
        restarted.stop()
        store.close()
    # The old process's run ended after the new server took the lease back: its result was refused.
    assert executed == [running.id] + [job.id for job in queued]
    assert all(job.status is JobStatus.SUCCEEDED and job.result == {"ok": True} for job in finals)
    assert finals[0].attempt == 2 and [job.attempt for job in finals[1:]] == [1, 1, 1]


def test_clean_stop_and_reopen(tmp_path, make_queue, runner):
    queue = make_queue(start=False)
    ids = [queue.submit("txt2img", {"steps": 1}).id for _ in range(3)]
    queue.stop()
    queue.store.close()

    reopened = make_queue()
    assert [reopened.wait(job_id, timeout=5).status for job_id in ids] == [JobStatus.SUCCEEDED] * 3
    assert runner.executed == ids


def test_database_is_wal_and_transactional(tmp_path):
    store = JobStore(tmp_path / "queue.sqlite3").open()
    job = store.insert("a", "txt2img", {"prompt": "cat"}, source="api")
    assert job.seq == 1
    with sqlite3.connect(tmp_path / "queue.sqlite3") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT id, status FROM jobs").fetchall() == [("a", "queued")]
    try:
        store.insert("b", "txt2img", {"bad": float("nan")}, source="api")
    except ValueError:
        pass
    assert store.count() == 1  # nothing half-written
    store.close()


def test_retention_by_count_prunes_oldest_and_calls_back(make_queue):
    pruned: list[Job] = []
    queue = make_queue(retention_count=3, on_prune=pruned.append)
    ids = [queue.submit("txt2img", {"steps": 1}).id for _ in range(5)]
    queue.wait(ids[-1], timeout=5)  # FIFO: the others are done (and some already pruned) by then
    queue.store.prune()  # the worker prunes after announcing each job; make sure the last prune ran

    assert [job.id for job in pruned] == ids[:2]
    assert pruned[0].result == {"images": [f"{ids[0]}-0.png"]}  # the callback can delete these files
    assert queue.get(ids[0]) is None and queue.get(ids[1]) is None
    assert [job.id for job in queue.list()] == ids[2:]


def test_retention_by_age_leaves_unfinished_jobs(tmp_path):
    store = JobStore(tmp_path / "queue.sqlite3", retention_count=100, retention_seconds=60).open()
    done = store.insert("done", "txt2img", {}, source="api")
    done = store.claim(done, "local", done.created_at)
    store.finish(done.model_copy(update={"status": JobStatus.SUCCEEDED, "finished_at": done.created_at}))
    store.insert("waiting", "txt2img", {}, source="api")

    assert store.prune(now=done.created_at + 30) == []
    assert [job.id for job in store.prune(now=done.created_at + 61)] == ["done"]
    assert [job.id for job in store.list()] == ["waiting"]
    assert store.finish(done.model_copy(update={"status": JobStatus.FAILED})) is False  # gone: no resurrection
    store.close()


def test_finish_never_overwrites_a_terminal_state(tmp_path):
    store = JobStore(tmp_path / "queue.sqlite3").open()
    job = store.insert("j", "txt2img", {}, source="api")
    assert store.finish(job.model_copy(update={"status": JobStatus.CANCELLED})) is True
    assert store.finish(job.model_copy(update={"status": JobStatus.SUCCEEDED})) is False
    assert store.get("j").status is JobStatus.CANCELLED
    store.close()


def test_in_memory_store_for_a_private_queue():
    store = JobStore(":memory:").open()
    assert store.insert("a", "txt2img", {}, source="cli").seq == 1
    assert store.get("a").status is JobStatus.QUEUED
    store.close()


def test_unreadable_database_is_set_aside_not_lost(tmp_path, caplog):
    path = tmp_path / "queue.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    store = JobStore(path).open()
    assert store.set_aside is not None and store.set_aside.read_bytes().startswith(b"this is not a database")
    assert store.count() == 0
    assert "unreadable" in caplog.text
    store.close()


def test_a_failed_job_keeps_its_http_status_and_field_across_reopen(tmp_path):
    from modules.api.errors import job_error
    from modules.core.errors import NotFoundError, UserInputError

    def runner(job, ctx):
        if job.payload["kind"] == "missing":
            raise NotFoundError("checkpoint 'x' is not installed")  # a message with no "field: " prefix
        raise UserInputError("override_settings.sd_vae", "no VAE named 'y'; choose one of: Automatic, None")

    store = JobStore(tmp_path / "queue.sqlite3").open()
    queue = JobQueue(store, runner)
    queue.start()
    try:
        missing = queue.wait(queue.submit("txt2img", {"kind": "missing"}).id, timeout=5)
        invalid = queue.wait(queue.submit("txt2img", {"kind": "invalid"}).id, timeout=5)
    finally:
        queue.stop()
        store.close()
    reopened = JobStore(tmp_path / "queue.sqlite3").open()
    try:
        for job, status in ((missing, 404), (invalid, 422)):
            stored = reopened.get(job.id)
            assert stored.status is JobStatus.FAILED and stored.error_info["status"] == status
            assert job_error(stored.error, stored.error_info).status_code == status
        restored = job_error(reopened.get(invalid.id).error, reopened.get(invalid.id).error_info)
        assert isinstance(restored, UserInputError) and restored.field == "override_settings.sd_vae"
        assert restored.reason.startswith("no VAE named 'y'")
    finally:
        reopened.close()


def test_a_schema_1_queue_is_upgraded_in_place(tmp_path):
    path = tmp_path / "queue.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, "
        "source TEXT NOT NULL, status TEXT NOT NULL, payload TEXT NOT NULL, created_at REAL NOT NULL, "
        "started_at REAL, finished_at REAL, progress REAL NOT NULL DEFAULT 0, step INTEGER NOT NULL DEFAULT 0, "
        "total_steps INTEGER NOT NULL DEFAULT 0, batch_no INTEGER NOT NULL DEFAULT 0, "
        "batch_count INTEGER NOT NULL DEFAULT 1, eta_seconds REAL, textinfo TEXT, error TEXT, result TEXT);"
        "INSERT INTO jobs (id, kind, source, status, payload, created_at, error) VALUES "
        "('old', 'txt2img', 'api-v1', 'failed', '{}', 1.0, 'steps: must be at most 150');"
        "INSERT INTO jobs (id, kind, source, status, payload, created_at) VALUES "
        "('waiting', 'txt2img', 'ui', 'queued', '{\"steps\": 2}', 2.0);"
        "PRAGMA user_version=1;"
    )
    conn.commit()
    conn.close()
    store = JobStore(path).open()
    try:
        old = store.get("old")
        assert old.error == "steps: must be at most 150" and old.error_info is None
        assert [job.id for job in store.list(JobStatus.QUEUED)] == ["waiting"]
    finally:
        store.close()
    from modules.api.errors import job_error

    assert job_error(old.error, old.error_info).status_code == 422  # inferred from the message, as before
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3
