"""Durable job state in SQLite (``queue.sqlite3`` in the data dir).

One connection, guarded by a lock, in WAL mode: readers (API handlers) and the single writer (the worker) do
not block each other for long, and every write is one transaction, so a crash leaves either the old or the new
state, never a half-written row. ``synchronous=NORMAL`` is the WAL setting that survives an application crash;
only an OS crash or power loss can drop the last committed transitions.

Restart policy (applied in :meth:`JobStore.open`): a job left ``running`` by a server that stopped mid-job is
marked ``failed`` with :data:`INTERRUPTED_MESSAGE` rather than re-queued, because a generation may have
partly written outputs and re-running it silently could surprise a client that already gave up on it;
``queued`` jobs stay queued and run again in their original FIFO order.

One process at a time: :meth:`JobStore.open` takes an advisory lock on ``<db>.lock`` (POSIX ``flock``; released
by the OS if the process dies), because the restart policy would otherwise fail the job another live server is
running. A second process that only needs a queue of its own (the CLI) uses ``JobStore(":memory:")``.

Only status transitions and final results are written; progress is at most written now and then by the
queue (see ``JobQueue(progress_persist_interval=...)``), never every sampler step.
"""

from __future__ import annotations

import builtins
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from modules.core.errors import UserInputError
from modules.jobs.models import FINISHED_STATUSES, Job, JobStatus

log = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "interrupted: server stopped while the job ran"
INTERRUPTED_INFO: dict[str, object] = {"status": 503, "name": "Unavailable", "field": None}
SCHEMA_VERSION = 2  # 2: error_info (the failed job's HTTP status, error name and field)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    progress REAL NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    batch_no INTEGER NOT NULL DEFAULT 0,
    batch_count INTEGER NOT NULL DEFAULT 1,
    eta_seconds REAL,
    textinfo TEXT,
    error TEXT,
    result TEXT,
    error_info TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status_seq ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs (finished_at);
"""

_COLUMNS = (
    "seq, id, kind, source, status, payload, created_at, started_at, finished_at, progress, step, total_steps, "
    "batch_no, batch_count, eta_seconds, textinfo, error, result, error_info"
)
_FINISHED_SQL = "(" + ", ".join(f"'{status.value}'" for status in FINISHED_STATUSES) + ")"

PruneCallback = Callable[[Job], None]


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(
        seq=row["seq"],
        id=row["id"],
        kind=row["kind"],
        source=row["source"],
        status=JobStatus(row["status"]),
        payload=json.loads(row["payload"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        progress=row["progress"],
        step=row["step"],
        total_steps=row["total_steps"],
        batch_no=row["batch_no"],
        batch_count=row["batch_count"],
        eta_seconds=row["eta_seconds"],
        textinfo=row["textinfo"],
        error=row["error"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error_info=json.loads(row["error_info"]) if row["error_info"] is not None else None,
    )


class JobStore:
    """SQLite persistence of jobs. Thread-safe: one connection, every call under one lock.

    Retention: after each finished job the queue calls :meth:`prune`, which deletes finished jobs beyond the
    newest ``retention_count`` and those finished more than ``retention_seconds`` ago (None: no age limit),
    then hands each deleted job to ``on_prune`` (outside the lock) so that its result files can be removed.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        retention_count: int = 200,
        retention_seconds: float | None = None,
        on_prune: PruneCallback | None = None,
        exclusive: bool = True,
    ) -> None:
        if retention_count < 0:
            raise ValueError("retention_count must be >= 0")
        self.path = Path(path)
        self.retention_count = retention_count
        self.retention_seconds = retention_seconds
        self.on_prune = on_prune
        self._lock = threading.RLock()
        self.exclusive = exclusive
        self._conn: sqlite3.Connection | None = None
        self._lock_file: Any = None
        self.set_aside: Path | None = None
        """Where :meth:`open` moved an unreadable database, if it had to."""
        self.recovered: list[Job] = []
        """Jobs that :meth:`open` found ``running`` and marked failed (for a start-up log line)."""

    # -- lifecycle -------------------------------------------------------------------------------------------

    def open(self) -> JobStore:
        """Open (creating if needed) the database and apply the restart policy. Returns self."""
        with self._lock:
            if self._conn is not None:
                return self
            if not self.in_memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.exclusive:
                    self._take_process_lock()
            try:
                try:
                    conn = self._connect()
                except sqlite3.DatabaseError as exc:
                    if isinstance(exc, sqlite3.OperationalError) or self.in_memory:
                        raise
                    self._set_aside(exc)
                    conn = self._connect()
            except BaseException:
                self._release_process_lock()
                raise
            self._conn = conn
            self.recovered = self._recover_interrupted()
        if self.recovered:
            log.warning(
                "%d job(s) were running when the server stopped and are now failed: %s",
                len(self.recovered),
                ", ".join(job.id for job in self.recovered),
            )
        self.prune()
        return self

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer Easel (schema {version} > {SCHEMA_VERSION})")
            conn.executescript(_SCHEMA)
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
            if "error_info" not in columns:  # a schema-1 queue: its failed jobs keep message-only errors
                conn.execute("ALTER TABLE jobs ADD COLUMN error_info TEXT")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
        except BaseException:
            conn.close()
            raise
        return conn

    def _set_aside(self, exc: Exception) -> None:
        """A damaged database is kept for inspection under a new name, never silently deleted."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        log.error("job database %s is unreadable (%s); moved to %s, starting an empty queue", self.path, exc, aside)
        self.path.replace(aside)
        for suffix in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + suffix)
            if side.exists():
                side.replace(aside.with_name(aside.name + suffix))
        self.set_aside = aside

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._release_process_lock()

    def _release_process_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    @property
    def in_memory(self) -> bool:
        return str(self.path) == ":memory:"

    def _take_process_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the single-server rule is then only documented
            return
        handle = open(self.path.with_name(self.path.name + ".lock"), "a+b")  # noqa: SIM115 - held while open
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise RuntimeError(f"{self.path} is in use by another Easel process (one server per data dir)") from None
        self._lock_file = handle

    def __enter__(self) -> JobStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("JobStore is not open")
        return self._conn

    def _write(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        """One statement in its own transaction (BEGIN IMMEDIATE: take the write lock up front)."""
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                cursor = db.execute(sql, tuple(params))
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return cursor

    def _recover_interrupted(self) -> list[Job]:
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE status = ? ORDER BY seq", (JobStatus.RUNNING.value,)
                ).fetchall()
                now = time.time()
                db.execute(
                    "UPDATE jobs SET status = ?, error = ?, error_info = ?, finished_at = ?, eta_seconds = NULL "
                    "WHERE status = ?",
                    (JobStatus.FAILED.value, INTERRUPTED_MESSAGE, json.dumps(INTERRUPTED_INFO), now,
                     JobStatus.RUNNING.value),
                )
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        return [
            _row_to_job(row).model_copy(
                update={"status": JobStatus.FAILED, "error": INTERRUPTED_MESSAGE, "error_info": INTERRUPTED_INFO,
                        "finished_at": now}
            )
            for row in rows
        ]

    # -- writes ----------------------------------------------------------------------------------------------

    def insert(self, job_id: str, kind: str, payload: dict[str, Any], *, source: str, id_field: str = "job_id") -> Job:
        """Persist a new queued job and return it with its FIFO ``seq``. A duplicate id is a UserInputError."""
        payload_json = json.dumps(payload, allow_nan=False)
        created_at = time.time()
        try:
            cursor = self._write(
                "INSERT INTO jobs (id, kind, source, status, payload, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (job_id, kind, source, JobStatus.QUEUED.value, payload_json, created_at),
            )
        except sqlite3.IntegrityError as exc:
            raise UserInputError(id_field, f"a job with id {job_id!r} already exists") from exc
        seq = cursor.lastrowid
        assert seq is not None
        return Job(id=job_id, seq=seq, kind=kind, source=source, payload=payload, created_at=created_at)

    def mark_running(self, job_id: str, started_at: float) -> bool:
        """queued -> running; False if the job is no longer queued (cancelled meanwhile)."""
        cursor = self._write(
            "UPDATE jobs SET status = ?, started_at = ? WHERE id = ? AND status = ?",
            (JobStatus.RUNNING.value, started_at, job_id, JobStatus.QUEUED.value),
        )
        return cursor.rowcount == 1

    def save_progress(self, job: Job) -> None:
        """Occasional progress checkpoint of a running job (never on every step)."""
        self._write(
            "UPDATE jobs SET progress = ?, step = ?, total_steps = ?, batch_no = ?, batch_count = ?, "
            "eta_seconds = ?, textinfo = ? WHERE id = ? AND status = ?",
            (
                job.progress,
                job.step,
                job.total_steps,
                job.batch_no,
                job.batch_count,
                job.eta_seconds,
                job.textinfo,
                job.id,
                JobStatus.RUNNING.value,
            ),
        )

    def finish(self, job: Job) -> bool:
        """Write the terminal state of a queued or running job (its final status, error, result, progress).

        Returns False when the job was already finished (a second writer lost the race).
        """
        if not job.status.finished:
            raise ValueError(f"finish() needs a terminal status, got {job.status.value}")
        result_json = json.dumps(job.result, allow_nan=False) if job.result is not None else None
        cursor = self._write(
            "UPDATE jobs SET status = ?, started_at = ?, finished_at = ?, progress = ?, step = ?, total_steps = ?, "
            "batch_no = ?, batch_count = ?, eta_seconds = ?, textinfo = ?, error = ?, result = ?, error_info = ? "
            f"WHERE id = ? AND status NOT IN {_FINISHED_SQL}",
            (
                job.status.value,
                job.started_at,
                job.finished_at,
                job.progress,
                job.step,
                job.total_steps,
                job.batch_no,
                job.batch_count,
                job.eta_seconds,
                job.textinfo,
                job.error,
                result_json,
                json.dumps(job.error_info) if job.error_info is not None else None,
                job.id,
            ),
        )
        return cursor.rowcount == 1

    def prune(self, now: float | None = None) -> list[Job]:
        """Apply the retention limits to finished jobs; returns (and reports to ``on_prune``) what was deleted."""
        now = time.time() if now is None else now
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE status IN {_FINISHED_SQL} "
                    "ORDER BY finished_at DESC, seq DESC LIMIT -1 OFFSET ?",
                    (self.retention_count,),
                ).fetchall()
                if self.retention_seconds is not None:
                    cutoff = now - self.retention_seconds
                    seen = {row["id"] for row in rows}
                    rows += [
                        row
                        for row in db.execute(
                            f"SELECT {_COLUMNS} FROM jobs WHERE status IN {_FINISHED_SQL} AND finished_at < ?",
                            (cutoff,),
                        ).fetchall()
                        if row["id"] not in seen
                    ]
                db.executemany("DELETE FROM jobs WHERE id = ?", [(row["id"],) for row in rows])
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        pruned = [_row_to_job(row) for row in rows]
        if self.on_prune is not None:
            for job in pruned:
                try:
                    self.on_prune(job)
                except Exception:
                    log.exception("removing the results of pruned job %s failed", job.id)
        return pruned

    # -- reads -----------------------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db().execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_job(row) if row is not None else None

    def list(
        self,
        status: JobStatus | Iterable[JobStatus] | None = None,
        *,
        limit: int | None = 100,
        offset: int = 0,
        newest_first: bool = False,
    ) -> builtins.list[Job]:
        """Jobs in FIFO order (``seq``), or newest first; optionally only some statuses."""
        where = ""
        params: builtins.list[Any] = []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)  # JobStatus is a str too
            where = "WHERE status IN (" + ", ".join("?" for _ in statuses) + ")"
            params = [JobStatus(s).value for s in statuses]
        order = "DESC" if newest_first else "ASC"
        sql = f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY seq {order} LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]
        with self._lock:
            rows = self._db().execute(sql, params).fetchall()
        return [_row_to_job(row) for row in rows]

    def count(self, status: JobStatus | None = None) -> int:
        with self._lock:
            if status is None:
                return int(self._db().execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
            return int(self._db().execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (status.value,)).fetchone()[0])
