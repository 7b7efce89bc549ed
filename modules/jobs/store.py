"""Durable job state in SQLite (``queue.sqlite3`` in the data dir).

One connection, guarded by a lock, in WAL mode: readers (API handlers) and the writers (the workers' driver
threads) do not block each other for long, and every write is one transaction, so a crash leaves either the old
or the new state, never a half-written row. ``synchronous=NORMAL`` is the WAL setting that survives an
application crash; only an OS crash or power loss can drop the last committed transitions. The table is derived
from the ``Job`` model (see ``modules.jobs.record``).

Leases and attempts: :meth:`JobStore.claim` moves a queued job to ``running`` for one worker and numbers the run
(``attempt`` 1, 2, ...); :meth:`JobStore.finish` writes a result only for the current attempt, so a late answer
from a run that was given up on can never overwrite (or duplicate) the result of the run that replaced it.
:meth:`JobStore.release` returns a leased job to the queue (its worker was lost): it keeps its ``seq``, so it is
at the head of the FIFO again, and after ``max_attempts`` runs it fails with :data:`WORKER_LOST_MESSAGE`.

Restart policy (applied in :meth:`JobStore.open`): a job left ``running`` by a server that stopped without
finishing it (a crash, a kill) is released like a job of a lost worker: it runs again, as the next attempt, in
its original FIFO place; ``queued`` jobs stay queued in their order.

One process at a time: :meth:`JobStore.open` takes an advisory lock on ``<db>.lock`` (POSIX ``flock``; released
by the OS if the process dies), because the restart policy would otherwise take back the job another live server
is running. A second process that only needs a queue of its own (the CLI) uses ``JobStore(":memory:")``.

Only status transitions and final results are written; progress is at most written now and then by the
queue (see ``JobQueue(progress_persist_interval=...)``), never every sampler step.
"""

from __future__ import annotations

import builtins
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import BinaryIO

from modules.core.errors import UserInputError
from modules.jobs import record
from modules.jobs.models import FINISHED_STATUSES, Job, JobStatus, JsonObject

log = logging.getLogger(__name__)

INTERRUPTED_MESSAGE = "interrupted: server stopped while the job ran"
INTERRUPTED_INFO: JsonObject = {"status": 503, "name": "Unavailable", "field": None}
WORKER_LOST_MESSAGE = "worker lost: the job's worker stopped during each of its attempts"
WORKER_LOST_INFO: JsonObject = {"status": 503, "name": "WorkerLost", "field": None}
MAX_ATTEMPTS = 3
SCHEMA_VERSION = 3  # 2: error_info; 3: attempt and worker (the lease)

_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_status_seq ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_finished_at ON jobs (finished_at);
"""
_COLUMNS = record.SELECT_COLUMNS
_FINISHED_SQL = "(" + ", ".join(f"'{status.value}'" for status in FINISHED_STATUSES) + ")"
_PROGRESS_FIELDS = ("progress", "step", "total_steps", "batch_no", "batch_count", "eta_seconds", "textinfo")
_FINAL_FIELDS = ("status", "started_at", "finished_at", *_PROGRESS_FIELDS, "error", "result", "error_info")

PruneCallback = Callable[[Job], None]
_row_to_job = record.from_row


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
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        if retention_count < 0:
            raise ValueError("retention_count must be >= 0")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.max_attempts = max_attempts
        self.path = Path(path)
        self.retention_count = retention_count
        self.retention_seconds = retention_seconds
        self.on_prune = on_prune
        self._lock = threading.RLock()
        self.exclusive = exclusive
        self._conn: sqlite3.Connection | None = None
        self._lock_file: BinaryIO | None = None
        self.set_aside: Path | None = None
        """Where :meth:`open` moved an unreadable database, if it had to."""
        self.recovered: list[Job] = []
        """Jobs that :meth:`open` found ``running`` and released (queued again, or failed after their last
        attempt), as they are now (for a start-up log line)."""

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
            self.recovered = [self._release(job, now=time.time()) for job in self.list(JobStatus.RUNNING, limit=None)]
        if self.recovered:
            log.warning(
                "%d job(s) were running when the server stopped and go back to the queue: %s",
                len(self.recovered),
                ", ".join(f"{job.id} ({job.status.value})" for job in self.recovered),
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
            conn.execute(record.CREATE_TABLE)
            conn.executescript(_INDEXES)
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
            for statement in record.missing_columns(columns):  # an older queue: its rows get the defaults
                conn.execute(statement)
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

    def _write(self, sql: str, params: Iterable[record.SqlValue] = ()) -> sqlite3.Cursor:
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

    def _update(self, job: Job, fields: Iterable[str], where: str, params: Iterable[record.SqlValue]) -> bool:
        names = tuple(fields)
        assignments = ", ".join(f"{name} = ?" for name in names)
        cursor = self._write(f"UPDATE jobs SET {assignments} WHERE {where}", (*record.to_row(job, names), *params))
        return cursor.rowcount == 1

    # -- writes ----------------------------------------------------------------------------------------------

    def insert(self, job_id: str, kind: str, payload: Mapping[str, object], *, source: str,
               id_field: str = "job_id") -> Job:
        """Persist a new queued job and return it with its FIFO ``seq``. A duplicate id is a UserInputError."""
        job = Job.model_validate({"id": job_id, "seq": 0, "kind": kind, "source": source, "payload": dict(payload),
                                  "created_at": time.time()})
        names = tuple(name for name in record.COLUMN_NAMES if name != "seq")
        try:
            cursor = self._write(
                f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                record.to_row(job, names),
            )
        except sqlite3.IntegrityError as exc:
            raise UserInputError(id_field, f"a job with id {job_id!r} already exists") from exc
        seq = cursor.lastrowid
        assert seq is not None
        return job.model_copy(update={"seq": seq})

    def claim(self, job: Job, worker: str, started_at: float) -> Job | None:
        """queued -> running under ``worker``'s lease, as the next attempt; None if the job is no longer queued."""
        claimed = job.model_copy(update={"status": JobStatus.RUNNING, "started_at": started_at, "worker": worker,
                                         "attempt": job.attempt + 1})
        ok = self._update(claimed, ("status", "started_at", "worker", "attempt"),
                          "id = ? AND status = ? AND attempt = ?", (job.id, JobStatus.QUEUED.value, job.attempt))
        return claimed if ok else None

    def save_progress(self, job: Job) -> None:
        """Occasional progress checkpoint of a running job (never on every step); only for its current attempt."""
        self._update(job, _PROGRESS_FIELDS, "id = ? AND status = ? AND attempt = ?",
                     (job.id, JobStatus.RUNNING.value, job.attempt))

    def finish(self, job: Job) -> bool:
        """Write the terminal state of a queued job, or of the current attempt of a running one (see ``claim``).

        Returns False when the job was already finished (a second writer lost the race) or when ``job`` is a
        run that was given up on (its ``attempt`` is no longer the job's): a job is never finished twice.
        """
        if not job.status.finished:
            raise ValueError(f"finish() needs a terminal status, got {job.status.value}")
        # A run's end (started_at set by claim) needs that run to hold the lease still; a queued job's end (a
        # cancel before it ran again) needs it to be still queued.
        expected = JobStatus.QUEUED if job.started_at is None else JobStatus.RUNNING
        return self._update(job, _FINAL_FIELDS, "id = ? AND attempt = ? AND status = ?",
                            (job.id, job.attempt, expected.value))

    def release(self, job: Job, reason: str) -> Job | None:
        """Take the lease back from a lost worker: the job is queued again at its FIFO place (its ``seq``), or
        fails with :data:`WORKER_LOST_MESSAGE` after ``max_attempts`` runs. None if ``job`` is not the current
        attempt of a running job (already released, finished or cancelled)."""
        with self._lock:
            current = self.get(job.id)
            if current is None or current.status is not JobStatus.RUNNING or current.attempt != job.attempt:
                return None
            log.warning("job %s lost its worker %s on attempt %d: %s", job.id, job.worker, job.attempt, reason)
            return self._release(current, now=time.time())

    def _release(self, job: Job, *, now: float) -> Job:
        if job.attempt >= self.max_attempts:
            released = job.model_copy(update={"status": JobStatus.FAILED, "error": WORKER_LOST_MESSAGE,
                                              "error_info": dict(WORKER_LOST_INFO), "finished_at": now,
                                              "eta_seconds": None})
            self._update(released, _FINAL_FIELDS, "id = ? AND attempt = ?", (job.id, job.attempt))
        else:
            released = job.model_copy(update={"status": JobStatus.QUEUED, "started_at": None, "progress": 0.0,
                                              "step": 0, "eta_seconds": None})
            self._update(released, ("status", "started_at", *_PROGRESS_FIELDS), "id = ? AND attempt = ?",
                         (job.id, job.attempt))
        return released

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
        params: builtins.list[record.SqlValue] = []
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
