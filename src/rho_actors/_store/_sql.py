"""SQL backends: one SQLite file, or a PostgreSQL database, behind the one Store actor.

The semantics are the directory backend's, in tables instead of files:

* ``rho_records`` holds each session's encoded trace lines, numbered
  ``0, 1, 2, ...`` per session (the records carry their own ``seq``); a
  group commit is one transaction with a multi-row insert per session, and
  a session whose part fails (inside its own savepoint) fails alone.
* ``rho_sessions`` holds the config, the cached meta (stamped, as
  ``meta.json`` is, with the record count it describes) and that count;
  a session is created whole (row and first records) in one transaction.
* Replay, listing, interrupted runs and stale metas go through the same
  functions as the directory backend (``current_info``, ``meta_from_trace``).

Schema versions live in ``rho_schema``; :func:`migrate` applies what is
missing on first use (and for ``rho-actors store migrate``), under an
advisory lock on PostgreSQL so that two processes starting together do not
both apply a migration.

Like every backend, its methods block and are called from the Store
actor's worker thread, one at a time. PostgreSQL goes through psycopg 3's
synchronous API on one connection (the optional
``rho-actors[postgres]`` extra); SQLite is the standard library's, in WAL
mode.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import sqlite3
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .. import _records as r
from .._errors import StoreError
from .._secrets import redact_url
from .._state import parse_trace
from ._backend import SessionInfo, corrupt_info, current_info, meta_json

logger = logging.getLogger("rho_actors.store")

__all__ = ["SQLBackend", "is_sql_location", "migrate", "open_sql_backend"]

# Each migration is the SQL of one schema version, applied in order, once.
# `{blob}` and `{real}` are the dialect's names for text and float columns.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE rho_sessions (
            id TEXT PRIMARY KEY,
            config TEXT NOT NULL,
            meta TEXT NOT NULL,
            records BIGINT NOT NULL DEFAULT 0,
            created_at {real} NOT NULL
        )""",
        """CREATE TABLE rho_records (
            session_id TEXT NOT NULL REFERENCES rho_sessions (id),
            n BIGINT NOT NULL,
            line TEXT NOT NULL,
            PRIMARY KEY (session_id, n)
        )""",
        """CREATE TABLE rho_cancels (
            session_id TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            requested_at {real} NOT NULL
        )""",
    ),
    (
        """CREATE TABLE rho_control (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            payload TEXT NOT NULL,
            requested_at {real} NOT NULL
        )""",
        "CREATE INDEX rho_control_session ON rho_control (session_id, requested_at)",
        """CREATE TABLE rho_queue (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL,
            prompt TEXT NOT NULL,
            config TEXT NOT NULL,
            status TEXT NOT NULL,
            worker TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            run_number INTEGER,
            created_at {real} NOT NULL,
            claimed_at {real},
            finished_at {real},
            result TEXT
        )""",
        "CREATE INDEX rho_queue_status ON rho_queue (status, created_at)",
        """CREATE TABLE rho_leases (
            session_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            generation BIGINT NOT NULL,
            expires_at {real} NOT NULL
        )""",
        """CREATE TABLE rho_workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            capacity INTEGER NOT NULL,
            running INTEGER NOT NULL,
            heartbeat_at {real} NOT NULL,
            started_at {real} NOT NULL
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
# How long getting a database connection is retried before an operation fails.
CONNECT_RETRY_SECONDS = 5.0
# The LISTEN/NOTIFY channel for cross-process control requests (session ids).
CONTROL_CHANNEL = "rho_control"


def is_sql_location(location: str) -> bool:
    """Whether a store location names a database rather than a directory."""
    return location.startswith(("postgresql://", "postgres://", "sqlite:"))


class _Dialect:
    """What differs between SQLite and PostgreSQL, in one place."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.real = "DOUBLE PRECISION" if name == "postgresql" else "REAL"

    def sql(self, text: str) -> str:
        return text.replace("?", "%s") if self.name == "postgresql" else text


class SQLBackend:
    """The store in SQL tables; see the module docstring."""

    def __init__(
        self,
        connect: Callable[[], contextlib.AbstractContextManager[Any]],
        *,
        dialect: str,
        location: str,
        close: Callable[[], None] = lambda: None,
        listen: Callable[[float], bool] | None = None,
    ) -> None:
        self._connect = connect
        self._dialect = _Dialect(dialect)
        self._close = close
        self.location = location
        self._listen: Callable[[float], bool] | None = listen
        self._listening = threading.Lock()
        # Sessions this process hosts under a lease (session id to owner and
        # generation): their appends are fenced, so a process that lost its
        # lease (it stalled past the expiry) can no longer write.
        self.leases: dict[str, tuple[str, int]] = {}

    # --- plumbing -----------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self, what: str, session_id: str | None = None) -> Iterator[Any]:
        """A connection in one transaction; database failures become StoreErrors.

        Getting the connection is retried with backoff for a few seconds (a
        database restarting, a dropped connection being replaced): nothing
        has been sent yet, so a retry cannot apply anything twice. A failure
        once statements ran is reported, never retried: a commit that may or
        may not have happened must not be repeated.
        """
        try:
            with contextlib.ExitStack() as stack:
                delay = 0.1
                deadline = time.monotonic() + CONNECT_RETRY_SECONDS
                while True:
                    try:
                        conn = stack.enter_context(self._connect())
                        break
                    except Exception:
                        if time.monotonic() + delay > deadline:
                            raise
                        time.sleep(delay)
                        delay = min(delay * 2, 2.0)
                yield conn
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(
                f"cannot {what} ({type(exc).__name__}: {exc})".strip(),
                path=self.location,
                session_id=session_id,
            ) from exc

    def _q(self, conn: Any, text: str, args: tuple[Any, ...] = ()) -> Any:
        return conn.execute(self._dialect.sql(text), args)

    # --- writes ---------------------------------------------------------------------

    def create(
        self, session_id: str, config_yaml: str, meta: Mapping[str, Any], lines: list[bytes]
    ) -> None:
        with self._tx("create session", session_id) as conn:
            if self._q(conn, "SELECT 1 FROM rho_sessions WHERE id = ?", (session_id,)).fetchone():
                raise StoreError(
                    "session already exists", path=self.location, session_id=session_id
                )
            self._q(
                conn,
                "INSERT INTO rho_sessions (id, config, meta, records, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    session_id,
                    config_yaml,
                    meta_json(meta, len(lines)).decode(),
                    len(lines),
                    time.time(),
                ),
            )
            self._insert(conn, session_id, 0, lines)

    def _insert(self, conn: Any, session_id: str, first: int, lines: list[bytes]) -> None:
        rows = [(session_id, first + i, _line(raw)) for i, raw in enumerate(lines)]
        if rows:
            insert = "INSERT INTO rho_records (session_id, n, line) VALUES (?, ?, ?)"
            conn.cursor().executemany(self._dialect.sql(insert), rows)

    def append(self, batch: Mapping[str, list[bytes]]) -> dict[str, StoreError]:
        """One transaction for the whole group commit.

        On PostgreSQL the batch goes in three statements whatever its size:
        one UPDATE of every session's record count (``unnest`` of two
        arrays), one ``COPY`` of every record. Only if that fails is the
        batch retried session by session, each in its own savepoint, so that
        one failing session fails alone.
        """
        if self._dialect.name == "postgresql":
            try:
                return self._append_bulk(batch)
            except StoreError:
                pass  # find out which session it was, one by one
        return self._append_each(batch)

    def _fence(self, conn: Any, session_ids: list[str]) -> dict[str, StoreError]:
        """Sessions of the batch whose lease this process no longer holds."""
        held = [sid for sid in session_ids if sid in self.leases]
        lost: dict[str, StoreError] = {}
        for sid in held:
            owner, generation = self.leases[sid]
            lock = " FOR UPDATE" if self._dialect.name == "postgresql" else ""
            row = self._q(
                conn,
                "SELECT 1 FROM rho_leases WHERE session_id = ? AND owner = ? AND generation = ?"
                + lock,
                (sid, owner, generation),
            ).fetchone()
            if row is None:
                lost[sid] = StoreError(
                    "lease lost: another process hosts this session now; not written",
                    path=self.location,
                    session_id=sid,
                )
        return lost

    def _append_bulk(self, batch: Mapping[str, list[bytes]]) -> dict[str, StoreError]:
        failures: dict[str, StoreError] = {}
        with self._tx("append to traces") as conn:
            failures.update(self._fence(conn, list(batch)))
            ids = [sid for sid in batch if sid not in failures]
            counts = [len(batch[sid]) for sid in ids]
            rows = conn.execute(
                "UPDATE rho_sessions AS s SET records = s.records + v.k "
                "FROM unnest(%s::text[], %s::bigint[]) AS v(id, k) "
                "WHERE s.id = v.id RETURNING s.id, s.records",
                (ids, counts),
            ).fetchall()
            ends = {str(sid): int(records) for sid, records in rows}
            with conn.cursor().copy("COPY rho_records (session_id, n, line) FROM STDIN") as copy:
                for sid in ids:
                    end = ends.get(sid)
                    if end is None:
                        failures[sid] = StoreError(
                            "no such session", path=self.location, session_id=sid
                        )
                        continue
                    lines = batch[sid]
                    first = end - len(lines)
                    for i, raw in enumerate(lines):
                        copy.write_row((sid, first + i, _line(raw)))
        return failures

    def _append_each(self, batch: Mapping[str, list[bytes]]) -> dict[str, StoreError]:
        failures: dict[str, StoreError] = {}
        with self._tx("append to traces") as conn:
            failures.update(self._fence(conn, list(batch)))
            for session_id, lines in batch.items():
                if session_id in failures:
                    continue
                try:
                    self._q(conn, "SAVEPOINT rho_append")
                    row = self._q(
                        conn,
                        "UPDATE rho_sessions SET records = records + ? WHERE id = ? "
                        "RETURNING records",
                        (len(lines), session_id),
                    ).fetchone()
                    if row is None:
                        raise StoreError(
                            "no such session", path=self.location, session_id=session_id
                        )
                    self._insert(conn, session_id, int(row[0]) - len(lines), lines)
                    self._q(conn, "RELEASE SAVEPOINT rho_append")
                except Exception as exc:
                    self._q(conn, "ROLLBACK TO SAVEPOINT rho_append")
                    self._q(conn, "RELEASE SAVEPOINT rho_append")
                    failures[session_id] = (
                        exc
                        if isinstance(exc, StoreError)
                        else StoreError(
                            f"cannot append to trace ({type(exc).__name__}: {exc})",
                            path=self.location,
                            session_id=session_id,
                        )
                    )
        return failures

    def write_meta(self, session_id: str, meta: Mapping[str, Any]) -> None:
        with self._tx("write meta", session_id) as conn:
            row = self._q(
                conn, "SELECT records FROM rho_sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is None:
                raise StoreError("no such session", path=self.location, session_id=session_id)
            self._q(
                conn,
                "UPDATE rho_sessions SET meta = ? WHERE id = ?",
                (meta_json(meta, int(row[0])).decode(), session_id),
            )

    def write_config(self, session_id: str, config_yaml: str) -> None:
        with self._tx("write config", session_id) as conn:
            self._q(
                conn, "UPDATE rho_sessions SET config = ? WHERE id = ?", (config_yaml, session_id)
            )

    def request_cancel(self, session_id: str, reason: str) -> None:
        with self._tx("request cancel", session_id) as conn:
            self._request_cancel(conn, session_id, reason)

    def _request_cancel(self, conn: Any, session_id: str, reason: str) -> None:
        self._q(conn, "DELETE FROM rho_cancels WHERE session_id = ?", (session_id,))
        self._q(
            conn,
            "INSERT INTO rho_cancels (session_id, reason, requested_at) VALUES (?, ?, ?)",
            (session_id, reason, time.time()),
        )
        if self._dialect.name == "postgresql":
            # Delivered at commit to every listening process (ids only: a
            # payload stays far below PostgreSQL's 8,000-byte limit).
            conn.execute("SELECT pg_notify(%s, %s)", (CONTROL_CHANNEL, session_id))

    def request_control(self, session_id: str, kind: str, payload: str) -> None:
        with self._tx("send a control request", session_id) as conn:
            self._q(
                conn,
                "INSERT INTO rho_control (id, session_id, kind, payload, requested_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, session_id, kind, payload, time.time()),
            )
            if self._dialect.name == "postgresql":
                conn.execute("SELECT pg_notify(%s, %s)", (CONTROL_CHANNEL, session_id))

    def take_control_requests(
        self, session_ids: Iterable[str]
    ) -> builtins.list[tuple[str, str, str]]:
        ids = builtins.list(session_ids)
        rows: builtins.list[Any] = []
        with self._tx("read control requests") as conn:
            # Most polls find nothing: one cheap look before touching anything.
            if not self._q(conn, "SELECT 1 FROM rho_control LIMIT 1").fetchone():
                return []
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows += self._q(
                    conn,
                    f"DELETE FROM rho_control WHERE session_id IN ({marks}) "
                    "RETURNING session_id, kind, payload, requested_at",
                    tuple(chunk),
                ).fetchall()
        rows.sort(key=lambda r: float(r[3]))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def take_cancel_requests(self) -> dict[str, str]:
        """Cancel requests for this process: for the sessions it holds leases on
        when it holds any (a worker), else all of them (one process per store)."""
        with self._tx("read cancel requests") as conn:
            if self.leases:
                rows = []
                for sid in list(self.leases):
                    rows += self._q(
                        conn,
                        "DELETE FROM rho_cancels WHERE session_id = ? RETURNING session_id, reason",
                        (sid,),
                    ).fetchall()
            else:
                rows = self._q(
                    conn, "DELETE FROM rho_cancels RETURNING session_id, reason"
                ).fetchall()
        return {str(sid): str(reason) or "cancelled from another process" for sid, reason in rows}

    # --- reads ------------------------------------------------------------------------

    def exists(self, session_id: str) -> bool:
        with self._tx("look up session", session_id) as conn:
            found = self._q(conn, "SELECT 1 FROM rho_sessions WHERE id = ?", (session_id,))
            return found.fetchone() is not None

    def load(self, session_id: str) -> list[r.Envelope]:
        with self._tx("read trace", session_id) as conn:
            if not self._q(
                conn, "SELECT 1 FROM rho_sessions WHERE id = ?", (session_id,)
            ).fetchone():
                raise StoreError("no such session", path=self.location, session_id=session_id)
            rows = self._q(
                conn, "SELECT line FROM rho_records WHERE session_id = ? ORDER BY n", (session_id,)
            ).fetchall()
        data = "".join(str(line) + "\n" for (line,) in rows).encode()
        try:
            return parse_trace(data, where=f"{self.location} session {session_id}")
        except StoreError as exc:
            raise StoreError(exc.message, session_id=session_id, operation="load") from exc

    def read_meta(self, session_id: str) -> dict[str, Any] | None:
        with self._tx("read meta", session_id) as conn:
            row = self._q(
                conn, "SELECT meta FROM rho_sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return _decode(row[0]) if row is not None else None

    def read_config(self, session_id: str) -> str | None:
        with self._tx("read config", session_id) as conn:
            row = self._q(
                conn, "SELECT config FROM rho_sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return str(row[0]) if row is not None else None

    def list(self) -> list[SessionInfo]:
        with self._tx("list sessions") as conn:
            rows = self._q(conn, "SELECT id, meta, records FROM rho_sessions").fetchall()
        infos: list[SessionInfo] = []
        for session_id, meta, records in rows:
            try:
                infos.append(current_info(str(session_id), _decode(meta), int(records), self.load))
            except StoreError as exc:
                infos.append(corrupt_info(str(session_id), exc))
        infos.sort(key=lambda info: info.created_at)
        return infos

    # --- the run queue, leases and workers (see rho_actors._workers) ---------------

    def enqueue(self, job_id: str, session_id: str, prompt: str, config_yaml: str) -> None:
        with self._tx("enqueue a run", session_id) as conn:
            self._q(
                conn,
                "INSERT INTO rho_queue (id, session_id, prompt, config, status, created_at) "
                "VALUES (?, ?, ?, ?, 'queued', ?)",
                (job_id, session_id, prompt, config_yaml, time.time()),
            )

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._tx("read a queued run") as conn:
            cursor = self._q(conn, "SELECT * FROM rho_queue WHERE id = ?", (job_id,))
            row = cursor.fetchone()
            names = [d[0] for d in cursor.description]
        return dict(zip(names, row, strict=True)) if row is not None else None

    def cancel_job(self, job_id: str, reason: str) -> str | None:
        """Cancel a queued run, or ask its worker to; returns the status it had."""
        with self._tx("cancel a queued run") as conn:
            row = self._q(
                conn, "SELECT status, session_id FROM rho_queue WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None:
                return None
            status, session_id = str(row[0]), str(row[1])
            if status == "queued":
                self._q(
                    conn,
                    "UPDATE rho_queue SET status = 'cancelled', finished_at = ?, result = ? "
                    "WHERE id = ? AND status = 'queued'",
                    (time.time(), json.dumps({"status": "cancelled", "reason": reason}), job_id),
                )
            elif status == "claimed":
                self._request_cancel(conn, session_id, reason)
            return status

    def heartbeat(
        self, worker: str, host: str, pid: int, capacity: int, running: int, lease_seconds: float
    ) -> None:
        """Say this worker lives; extend every lease it holds."""
        now = time.time()
        with self._tx("send a heartbeat") as conn:
            updated = self._q(
                conn,
                "UPDATE rho_workers SET capacity = ?, running = ?, heartbeat_at = ? WHERE id = ?",
                (capacity, running, now, worker),
            )
            if updated.rowcount == 0:
                self._q(
                    conn,
                    "INSERT INTO rho_workers (id, host, pid, capacity, running, heartbeat_at, "
                    "started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (worker, host, pid, capacity, running, now, now),
                )
            # Only leases still in force: one that expired may already be
            # another worker's to take, and is never revived.
            self._q(
                conn,
                "UPDATE rho_leases SET expires_at = ? WHERE owner = ? AND expires_at >= ?",
                (now + lease_seconds, worker, now),
            )

    def workers(self) -> builtins.list[dict[str, Any]]:
        with self._tx("list workers") as conn:
            cursor = self._q(conn, "SELECT * FROM rho_workers ORDER BY started_at")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def claim(self, worker: str, limit: int, lease_seconds: float) -> builtins.list[dict[str, Any]]:
        """Claim up to ``limit`` runs whose sessions nobody hosts (queued ones, and
        ones whose worker's lease expired), leasing each session to ``worker``.

        ``FOR UPDATE SKIP LOCKED`` on PostgreSQL lets workers claim at the
        same time without waiting for each other; SQLite's write lock
        (``BEGIN IMMEDIATE``) serialises them.
        """
        now = time.time()
        claimed: builtins.list[dict[str, Any]] = []
        with self._tx("claim queued runs") as conn:
            # Claimable: queued runs, and runs claimed by a worker whose lease
            # on the session has expired (it died, or stalled past it). Taking
            # one takes its session's lease at a higher generation in the same
            # transaction, so there is no moment when a run is nobody's and
            # no way back for the old holder (its writes are fenced).
            lock = " FOR UPDATE OF q SKIP LOCKED" if self._dialect.name == "postgresql" else ""
            rows = self._q(
                conn,
                "SELECT q.id, q.session_id, q.prompt, q.config, q.attempts, q.run_number "
                "FROM rho_queue AS q LEFT JOIN rho_leases AS l ON l.session_id = q.session_id "
                "WHERE q.status IN ('queued', 'claimed') "
                "AND (l.session_id IS NULL OR l.expires_at < ?) "
                "ORDER BY q.created_at LIMIT ?" + lock,
                (now, limit * 4),
            ).fetchall()
            sessions: set[str] = set()
            for job_id, session_id, prompt, config, attempts, run_number in rows:
                if len(claimed) >= limit or session_id in sessions:
                    continue  # one run per session at a time
                generation = self._take_lease(conn, str(session_id), worker, now + lease_seconds)
                if generation is None:
                    continue
                sessions.add(str(session_id))
                self._q(
                    conn,
                    "UPDATE rho_queue SET status = 'claimed', worker = ?, claimed_at = ?, "
                    "attempts = attempts + 1 WHERE id = ?",
                    (worker, now, job_id),
                )
                claimed.append(
                    {
                        "id": str(job_id),
                        "session_id": str(session_id),
                        "prompt": str(prompt),
                        "config": str(config),
                        "attempts": int(attempts) + 1,
                        "run_number": None if run_number is None else int(run_number),
                        "generation": generation,
                    }
                )
        for job in claimed:
            self.leases[job["session_id"]] = (worker, job["generation"])
        return claimed

    def _take_lease(self, conn: Any, session_id: str, owner: str, expires: float) -> int | None:
        now = time.time()
        lock = " FOR UPDATE" if self._dialect.name == "postgresql" else ""
        row = self._q(
            conn,
            "SELECT owner, generation, expires_at FROM rho_leases WHERE session_id = ?" + lock,
            (session_id,),
        ).fetchone()
        if row is None:
            self._q(
                conn,
                "INSERT INTO rho_leases (session_id, owner, generation, expires_at) "
                "VALUES (?, ?, 1, ?)",
                (session_id, owner, expires),
            )
            return 1
        if float(row[2]) >= now:
            return None  # hosted (here or elsewhere) and in force
        generation = int(row[1]) + 1
        self._q(
            conn,
            "UPDATE rho_leases SET owner = ?, generation = ?, expires_at = ? WHERE session_id = ?",
            (owner, generation, expires, session_id),
        )
        return generation

    def mark_run(self, job_id: str, worker: str, run_number: int) -> bool:
        """Note which of its session's runs a claimed job is, before it starts: a
        worker that takes the job over after a crash then knows whether the run
        began (resume it, or record how it ended) or not (start it)."""
        with self._tx("mark a queued run") as conn:
            done = self._q(
                conn,
                "UPDATE rho_queue SET run_number = ? WHERE id = ? AND status = 'claimed' "
                "AND worker = ?",
                (run_number, job_id, worker),
            )
            return bool(done.rowcount == 1)

    def finish(self, job_id: str, worker: str, result: Mapping[str, Any]) -> bool:
        """Record a run's result once, if ``worker`` still holds the run; frees its lease."""
        with self._tx("record a run's result") as conn:
            row = self._q(
                conn, "SELECT session_id FROM rho_queue WHERE id = ?", (job_id,)
            ).fetchone()
            done = self._q(
                conn,
                "UPDATE rho_queue SET status = 'done', finished_at = ?, result = ? "
                "WHERE id = ? AND status = 'claimed' AND worker = ?",
                (time.time(), json.dumps(dict(result)), job_id, worker),
            )
            recorded = bool(done.rowcount == 1)
            if row is not None:
                self._q(
                    conn,
                    "DELETE FROM rho_leases WHERE session_id = ? AND owner = ?",
                    (str(row[0]), worker),
                )
        if row is not None:
            self.leases.pop(str(row[0]), None)
        return recorded

    @property
    def listens(self) -> bool:
        """Whether :meth:`wait_for_control` wakes on requests (PostgreSQL)."""
        return self._listen is not None

    def wait_for_control(self, timeout: float) -> bool:
        """Block until another process sends a control request (a cancel) or
        ``timeout`` passes; True if one came. PostgreSQL wakes the waiter at
        once through LISTEN/NOTIFY on a connection of its own; elsewhere
        this just waits (the caller then polls).
        """
        if self._listen is None or not self._listening.acquire(blocking=False):
            time.sleep(timeout)
            return False
        try:
            return self._listen(timeout)
        finally:
            self._listening.release()

    def release(self, session_id: str) -> None:
        """Nothing is held per session (the connection belongs to the backend)."""

    def close(self) -> None:
        self._close()


def _line(raw: bytes) -> str:
    return raw.decode("utf-8").rstrip("\n")


def _decode(text: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def migrate(conn: Any, dialect: str) -> int:
    """Bring the schema up to date inside ``conn``'s transaction; returns the version."""
    d = _Dialect(dialect)
    if dialect == "postgresql":
        # Serialises concurrent first uses; released when the transaction ends.
        conn.execute("SELECT pg_advisory_xact_lock(7164813)")
    conn.execute(
        d.sql(
            f"CREATE TABLE IF NOT EXISTS rho_schema (version INTEGER PRIMARY KEY, "
            f"applied_at {d.real} NOT NULL)"
        )
    )
    row = conn.execute("SELECT max(version) FROM rho_schema").fetchone()
    current = int(row[0]) if row is not None and row[0] is not None else 0
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"the database's schema is version {current}, newer than this rho-actors "
            f"({SCHEMA_VERSION}); upgrade rho-actors"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[version - 1]:
            conn.execute(statement.format(real=d.real, blob="TEXT"))
        conn.execute(
            d.sql("INSERT INTO rho_schema (version, applied_at) VALUES (?, ?)"),
            (version, time.time()),
        )
    return SCHEMA_VERSION


def open_sql_backend(location: str) -> SQLBackend:
    """A backend for ``sqlite:PATH`` (or ``sqlite:///PATH``) or ``postgresql://...``,
    with its schema migrated to the current version."""
    if location.startswith("sqlite:"):
        return _open_sqlite(location)
    return _open_postgres(location)


def _open_sqlite(location: str) -> SQLBackend:
    path = location.removeprefix("sqlite:")
    if path.startswith("///"):
        path = path[2:]
    elif path.startswith("//"):
        raise StoreError("a SQLite store is sqlite:PATH or sqlite:///ABSOLUTE/PATH", path=location)
    if not path:
        raise StoreError("no database file in the SQLite location", path=location)

    def connect_raw() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    # One connection, used from one thread at a time (the Store actor's
    # worker, or a caller holding the store's lock). Closing (a supervisor
    # ending) drops it; the next use opens it again, as a directory store's
    # trace files are reopened.
    held: list[sqlite3.Connection] = []

    def connect() -> contextlib.AbstractContextManager[sqlite3.Connection]:
        if not held:
            held.append(connect_raw())
        return _sqlite_tx(held[0])

    def close() -> None:
        while held:
            held.pop().close()

    try:
        with connect() as conn:
            migrate(conn, "sqlite")
    except sqlite3.Error as exc:
        close()
        raise StoreError(f"cannot open the SQLite store ({exc})", path=path) from exc
    return SQLBackend(connect, dialect="sqlite", location=path, close=close)


@contextlib.contextmanager
def _sqlite_tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _open_postgres(location: str) -> SQLBackend:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "a PostgreSQL store needs psycopg: pip install 'rho-actors[postgres]'",
            path=redact_url(location),
        ) from None
    shown = redact_url(location)
    # One connection, used by one thread at a time (the Store actor's worker,
    # or a caller holding the store's lock): every backend call is serialised
    # anyway, so a pool would only add threads that outlive their store. It is
    # opened on first use, replaced when the server dropped it, and closed with
    # the backend (a supervisor ending) or when the backend is collected.
    held: list[Any] = []

    @contextlib.contextmanager
    def connect() -> Iterator[Any]:
        dropped = bool(held) and (held[0].closed or held[0].broken)
        if dropped:
            with contextlib.suppress(psycopg.Error):
                held.pop().close()
        if not held:
            held.append(psycopg.connect(location, connect_timeout=10))
            if dropped:
                logger.info("PostgreSQL store: reconnected after the server dropped the connection")
        conn = held[0]
        try:
            with conn.transaction():
                yield conn
        except psycopg.OperationalError as exc:
            # A connection that failed mid-transaction is not trusted again.
            logger.warning("PostgreSQL store: the connection failed: %s", str(exc).strip())
            with contextlib.suppress(psycopg.Error):
                held.pop().close()
            raise

    def close() -> None:
        while held:
            with contextlib.suppress(psycopg.Error):
                held.pop().close()

    # One plain connection first: a refused or misaddressed server fails at
    # once with libpq's own message, not after the pool's wait.
    try:
        with psycopg.connect(location, connect_timeout=10) as conn, conn.transaction():
            migrate(conn, "postgresql")
    except psycopg.Error as exc:
        # libpq's first line names the host and port, never the password.
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise StoreError(f"cannot open the PostgreSQL store ({detail})", path=shown) from None
    listener: list[Any] = []

    def listen(timeout: float) -> bool:
        try:
            if not listener:
                conn = psycopg.connect(location, autocommit=True, connect_timeout=10)
                conn.execute(f"LISTEN {CONTROL_CHANNEL}")
                listener.append(conn)
            for _ in listener[0].notifies(timeout=timeout, stop_after=1):
                return True
        except psycopg.Error:
            # The database is away: poll until it is back (a new connection
            # next time); the caller looks for requests after each wait anyway.
            while listener:
                with contextlib.suppress(psycopg.Error):
                    listener.pop().close()
            time.sleep(timeout)
        return False

    def close_all() -> None:
        close()
        while listener:
            with contextlib.suppress(psycopg.Error):
                listener.pop().close()

    backend = SQLBackend(
        connect, dialect="postgresql", location=shown, close=close_all, listen=listen
    )
    # A store nobody closes (a SessionStore used for one listing) must not leave
    # connections to the garbage collector, which would warn about them.
    weakref.finalize(backend, close_all)
    return backend
