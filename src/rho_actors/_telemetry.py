"""The telemetry database: what sessions cost and how their tools behaved.

The trace of a session is for replaying it; telemetry is for adding up many of
them (per team, per project) without replaying anything. It lives in one SQLite
file that the Store actor writes and any process may read::

    sessions  one row per session, upserted as its status changes
    runs      one row per run, upserted (a run may be recorded at start and at end)
    turns     one row per model call: tokens, duration, cost
    tools     one row per tool call: duration and whether it failed

Writing is blocking, like a storage backend: the Store actor calls
:meth:`TelemetryDB.write` from its single worker thread, so the write
connection is never used concurrently and needs no lock. Each call is one
transaction, which is what makes group commit cheap: one WAL append serves the
whole batch.

Queries open a read-only connection of their own for each call. WAL lets them
run while the writer is mid-transaction, and the same methods work from another
process (a ``stats`` command) pointed at the same file.

Secrets are not stored: metadata values under a key that looks secret are
replaced before they reach the file (see :data:`SECRET_KEY_PARTS`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, assert_never

import attrs

from ._config import user_path
from ._errors import StoreError
from ._secrets import SECRET_KEY_PARTS, redact

__all__ = [
    "PRICES_PER_MILLION",
    "SECRET_KEY_PARTS",
    "TELEMETRY_DB_ENV",
    "RunRow",
    "SessionRow",
    "TelemetryDB",
    "TelemetryRow",
    "ToolRow",
    "ToolStats",
    "Totals",
    "TurnRow",
    "cost_usd",
    "default_telemetry_path",
]

TELEMETRY_DB_ENV = "RHO_ACTORS_TELEMETRY_DB"

# Bump when the tables change; a file from a newer version is refused rather
# than written with the wrong columns.
SCHEMA_VERSION = 1

# How long a connection waits for another one's lock before failing. Writers
# hold the lock for one batch, so this is generous.
BUSY_TIMEOUT_S = 5.0


# OpenAI list prices in USD per million tokens: (input, cached input, output).
# They are published list prices (standard tier, as of mid-2025) and change
# over time; costs computed from them are estimates, not invoices.
PRICES_PER_MILLION: dict[str, tuple[float, float, float]] = {
    "gpt-5": (1.25, 0.125, 10.00),
    "gpt-5-mini": (0.25, 0.025, 2.00),
    "gpt-5-nano": (0.05, 0.005, 0.40),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "o3": (2.00, 0.50, 8.00),
    "o4-mini": (1.10, 0.275, 4.40),
}

_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def cost_usd(
    model: str, input_tokens: int, output_tokens: int, cached_tokens: int = 0
) -> float | None:
    """The list-price cost of one model call, or ``None`` if the model's price is unknown.

    ``cached_tokens`` are the part of ``input_tokens`` served from the prompt
    cache, billed at the cached rate instead of the input rate. Reasoning
    tokens are already part of ``output_tokens`` as OpenAI reports them.

    A dated snapshot (``gpt-4o-2024-08-06``) is priced as its base model, but
    nothing else is guessed: ``o3-pro`` is not ``o3``, and an unknown price is
    ``None`` rather than a wrong number.
    """
    prices = PRICES_PER_MILLION.get(_DATE_SUFFIX.sub("", model.strip().lower()))
    if prices is None:
        return None
    input_rate, cached_rate, output_rate = prices
    cached = min(max(cached_tokens, 0), max(input_tokens, 0))
    uncached = max(input_tokens, 0) - cached
    return (uncached * input_rate + cached * cached_rate + output_tokens * output_rate) / 1e6


def default_telemetry_path() -> Path:
    """``$RHO_ACTORS_TELEMETRY_DB``, else ``$XDG_CONFIG_HOME/rho-actors/telemetry.db``."""
    return user_path(TELEMETRY_DB_ENV, "telemetry.db")


@attrs.frozen(kw_only=True, slots=True)
class SessionRow:
    """A session as telemetry sees it. Writing it again with a new status updates it."""

    session_id: str
    team_id: str | None = None
    project_id: str | None = None
    model: str
    profile: str
    status: str
    started_at: float
    ended_at: float | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True, slots=True)
class TurnRow:
    """One model call. ``cost_usd`` is ``None`` when the model's price is unknown."""

    session_id: str
    run: int
    turn: int
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    duration_ms: float
    cost_usd: float | None = None
    ts: float


@attrs.frozen(kw_only=True, slots=True)
class ToolRow:
    """One tool call; ``error`` says why it failed when ``is_error``."""

    session_id: str
    run: int
    tool_name: str
    duration_ms: float
    is_error: bool = False
    error: str | None = None
    ts: float


@attrs.frozen(kw_only=True, slots=True)
class RunRow:
    """A run's summary. Its token counts are used only when the run has no turn rows."""

    session_id: str
    run: int
    status: str
    error: str | None = None
    cancel_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    duration_ms: float = 0.0
    started_at: float
    ended_at: float | None = None


TelemetryRow = SessionRow | TurnRow | ToolRow | RunRow


@attrs.frozen(kw_only=True, slots=True)
class Totals:
    """Sums over a team, a project, a session, or everything.

    ``cost_usd`` is ``None`` when no counted call had a known price, so "free"
    and "unknown" stay apart; when only some prices are known it is the sum of
    those, a lower bound.
    """

    sessions: int = 0
    runs: int = 0
    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None
    duration_ms: float = 0.0


@attrs.frozen(kw_only=True, slots=True)
class ToolStats:
    """How one tool has behaved: how often it ran, failed, and how long it took."""

    calls: int
    errors: int
    total_ms: float
    mean_ms: float


_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    team_id TEXT,
    project_id TEXT,
    model TEXT NOT NULL,
    profile TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS runs (
    session_id TEXT NOT NULL,
    run INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    cancel_reason TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd REAL,
    duration_ms REAL NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    PRIMARY KEY (session_id, run)
);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL,
    run INTEGER NOT NULL,
    turn INTEGER NOT NULL,
    model TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    cost_usd REAL,
    ts REAL NOT NULL,
    PRIMARY KEY (session_id, run, turn)
);
CREATE TABLE IF NOT EXISTS tools (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    run INTEGER NOT NULL,
    tool_name TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    is_error INTEGER NOT NULL,
    error TEXT,
    ts REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_team ON sessions (team_id);
CREATE INDEX IF NOT EXISTS sessions_project ON sessions (project_id);
CREATE INDEX IF NOT EXISTS tools_session ON tools (session_id);
CREATE INDEX IF NOT EXISTS tools_name ON tools (tool_name);
"""

# A later session row refines the earlier one: the start stays the first one
# seen, and fields the later row leaves empty keep what is stored.
_UPSERT_SESSION = """
INSERT INTO sessions (session_id, team_id, project_id, model, profile, status,
                      started_at, ended_at, metadata)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (session_id) DO UPDATE SET
    team_id = coalesce(excluded.team_id, team_id),
    project_id = coalesce(excluded.project_id, project_id),
    model = excluded.model,
    profile = excluded.profile,
    status = excluded.status,
    started_at = min(started_at, excluded.started_at),
    ended_at = coalesce(excluded.ended_at, ended_at),
    metadata = CASE WHEN excluded.metadata = '{}' THEN metadata ELSE excluded.metadata END
"""

# Runs and turns are keyed, so a batch delivered twice does not count twice.
_UPSERT_RUN = """
INSERT OR REPLACE INTO runs (session_id, run, status, error, cancel_reason, input_tokens,
                             output_tokens, cached_tokens, reasoning_tokens, cost_usd,
                             duration_ms, started_at, ended_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_UPSERT_TURN = """
INSERT OR REPLACE INTO turns (session_id, run, turn, model, input_tokens, output_tokens,
                              cached_tokens, reasoning_tokens, duration_ms, cost_usd, ts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

_INSERT_TOOL = """
INSERT INTO tools (session_id, run, tool_name, duration_ms, is_error, error, ts)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""


def _metadata_json(metadata: Mapping[str, Any]) -> str:
    # default=str: a stray datetime or Path in metadata must not fail the batch.
    return json.dumps(redact(metadata), ensure_ascii=False, sort_keys=True, default=str)


def _scope(
    *, team_id: str | None, project_id: str | None, session_id: str | None = None
) -> tuple[str, list[Any]]:
    """A WHERE clause selecting rows of the given team/project/session, and its parameters.

    Only the sessions table knows teams and projects, so other tables are
    filtered through it; rows of a session never recorded in it are counted
    only when no team or project is asked for.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if session_id is not None:
        clauses.append("session_id = ?")
        params.append(session_id)
    owners = [("team_id", team_id), ("project_id", project_id)]
    owners = [(column, value) for column, value in owners if value is not None]
    if owners:
        condition = " AND ".join(f"{column} = ?" for column, _ in owners)
        clauses.append(f"session_id IN (SELECT session_id FROM sessions WHERE {condition})")
        params.extend(value for _, value in owners)
    return (" AND ".join(clauses) or "1"), params


def _add_costs(*costs: float | None) -> float | None:
    known = [cost for cost in costs if cost is not None]
    return sum(known) if known else None


class TelemetryDB:
    """The telemetry SQLite file: batch writes from the Store actor, queries from anyone.

    Nothing touches the disk until the first write, so creating one for a
    session that never records anything costs nothing. Not thread-safe for
    concurrent writers: it is meant to be written from one worker thread at a
    time, as the Store actor does.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._conn: sqlite3.Connection | None = None

    def _error(self, what: str, exc: Exception, operation: str) -> StoreError:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return StoreError(f"cannot {what} ({reason})", path=str(self.path), operation=operation)

    def _writer(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error("create the telemetry directory", exc, "telemetry open") from exc
        try:
            # check_same_thread=False: trio's worker threads come from a cache,
            # so consecutive calls may run on different threads; the Store's
            # limiter of 1 is what keeps them from overlapping.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._error("open telemetry database", exc, "telemetry open") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode can lose the last commits on a power cut but
            # never corrupts; telemetry is not worth a disk flush per batch.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise self._error("open telemetry database", exc, "telemetry open") from exc
        except StoreError:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            version = row[0] if row else None
            if version is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise StoreError(
                    f"telemetry database has schema version {version}, newer than the "
                    f"{SCHEMA_VERSION} this rho-actors understands",
                    path=str(self.path),
                    operation="telemetry open",
                )
            conn.execute("COMMIT")
        except Exception:
            conn.execute("ROLLBACK")
            raise

    def write(self, rows: Sequence[TelemetryRow]) -> None:
        """Record a batch of rows in one transaction: all of them, or none.

        On failure the batch is rolled back and :class:`StoreError` raised, so
        retrying the same batch counts nothing twice. Session, run and turn
        rows are keyed and replace what they repeat; tool rows have no natural
        key, so a batch that *succeeded* must not be written again.
        """
        if not rows:
            return
        conn = self._writer()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    self._write_row(conn, row)
                conn.execute("COMMIT")
            except Exception:
                conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:
            # Besides SQLite's own errors: a value it cannot store (an int
            # past 64 bits) or metadata json cannot encode (a cycle).
            # A connection whose rollback failed is in an unknown state; the
            # next write opens a fresh one.
            if conn.in_transaction:
                self.close()
            raise self._error("write telemetry", exc, "telemetry write") from exc

    @staticmethod
    def _write_row(conn: sqlite3.Connection, row: TelemetryRow) -> None:
        match row:
            case SessionRow():
                conn.execute(
                    _UPSERT_SESSION,
                    (
                        row.session_id,
                        row.team_id,
                        row.project_id,
                        row.model,
                        row.profile,
                        row.status,
                        row.started_at,
                        row.ended_at,
                        _metadata_json(row.metadata),
                    ),
                )
            case RunRow():
                conn.execute(
                    _UPSERT_RUN,
                    (
                        row.session_id,
                        row.run,
                        row.status,
                        row.error,
                        row.cancel_reason,
                        row.input_tokens,
                        row.output_tokens,
                        row.cached_tokens,
                        row.reasoning_tokens,
                        row.cost_usd,
                        row.duration_ms,
                        row.started_at,
                        row.ended_at,
                    ),
                )
            case TurnRow():
                conn.execute(
                    _UPSERT_TURN,
                    (
                        row.session_id,
                        row.run,
                        row.turn,
                        row.model,
                        row.input_tokens,
                        row.output_tokens,
                        row.cached_tokens,
                        row.reasoning_tokens,
                        row.duration_ms,
                        row.cost_usd,
                        row.ts,
                    ),
                )
            case ToolRow():
                conn.execute(
                    _INSERT_TOOL,
                    (
                        row.session_id,
                        row.run,
                        row.tool_name,
                        row.duration_ms,
                        int(row.is_error),
                        row.error,
                        row.ts,
                    ),
                )
            case _:
                assert_never(row)

    def close(self) -> None:
        """Close the write connection; a later write opens a new one."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @contextlib.contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection | None]:
        """A read-only connection for one query, or ``None`` if nothing was written yet.

        A missing file reads as empty instead of being created: a query must
        not leave a database behind wherever it was pointed.
        """
        if not self.path.exists() and not self.path.is_symlink():
            yield None
            return
        uri = self.path.absolute().as_uri() + "?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S)
        except sqlite3.Error as exc:
            raise self._error("open telemetry database", exc, "telemetry query") from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            raise self._error("query telemetry", exc, "telemetry query") from exc
        finally:
            conn.close()

    def totals(
        self,
        *,
        team_id: str | None = None,
        project_id: str | None = None,
        session_id: str | None = None,
    ) -> Totals:
        """Sums over the selected sessions (all of them if nothing is selected).

        Tokens and cost come from turns, each model call counted once; a run
        with no turn rows (a writer that records only run summaries) counts
        its own totals instead. Duration is the runs' wall time, which
        includes tool calls and waiting, not just the model.
        """
        where, params = _scope(team_id=team_id, project_id=project_id, session_id=session_id)
        with self._reader() as conn:
            if conn is None:
                return Totals()
            sessions = conn.execute(
                f"SELECT count(*) FROM sessions WHERE {where}", params
            ).fetchone()
            runs = conn.execute(
                f"SELECT count(*), total(duration_ms) FROM runs WHERE {where}", params
            ).fetchone()
            turns = conn.execute(
                "SELECT count(*), total(input_tokens), total(output_tokens),"
                " total(cached_tokens), total(reasoning_tokens), sum(cost_usd)"
                f" FROM turns WHERE {where}",
                params,
            ).fetchone()
            summaries = conn.execute(
                "SELECT total(input_tokens), total(output_tokens), total(cached_tokens),"
                " total(reasoning_tokens), sum(cost_usd) FROM runs AS r"
                f" WHERE {where} AND NOT EXISTS (SELECT 1 FROM turns AS t"
                " WHERE t.session_id = r.session_id AND t.run = r.run)",
                params,
            ).fetchone()
            tools = conn.execute(
                f"SELECT count(*), total(is_error) FROM tools WHERE {where}", params
            ).fetchone()
        return Totals(
            sessions=sessions[0],
            runs=runs[0],
            turns=turns[0],
            tool_calls=tools[0],
            tool_errors=int(tools[1]),
            input_tokens=int(turns[1] + summaries[0]),
            output_tokens=int(turns[2] + summaries[1]),
            cached_tokens=int(turns[3] + summaries[2]),
            reasoning_tokens=int(turns[4] + summaries[3]),
            cost_usd=_add_costs(turns[5], summaries[4]),
            duration_ms=float(runs[1]),
        )

    def sessions(
        self, *, team_id: str | None = None, project_id: str | None = None
    ) -> list[SessionRow]:
        """The selected sessions, oldest first, with their (redacted) metadata."""
        where, params = _scope(team_id=team_id, project_id=project_id)
        with self._reader() as conn:
            if conn is None:
                return []
            rows = conn.execute(
                "SELECT session_id, team_id, project_id, model, profile, status, started_at,"
                f" ended_at, metadata FROM sessions WHERE {where}"
                " ORDER BY started_at, session_id",
                params,
            ).fetchall()
        return [
            SessionRow(
                session_id=row[0],
                team_id=row[1],
                project_id=row[2],
                model=row[3],
                profile=row[4],
                status=row[5],
                started_at=row[6],
                ended_at=row[7],
                metadata=_load_metadata(row[8]),
            )
            for row in rows
        ]

    def tool_stats(
        self, *, team_id: str | None = None, project_id: str | None = None
    ) -> dict[str, ToolStats]:
        """Per-tool call counts, failures and durations, keyed by tool name."""
        where, params = _scope(team_id=team_id, project_id=project_id)
        with self._reader() as conn:
            if conn is None:
                return {}
            rows = conn.execute(
                "SELECT tool_name, count(*), total(is_error), total(duration_ms)"
                f" FROM tools WHERE {where} GROUP BY tool_name ORDER BY tool_name",
                params,
            ).fetchall()
        return {
            name: ToolStats(
                calls=calls, errors=int(errors), total_ms=float(total_ms), mean_ms=total_ms / calls
            )
            for name, calls, errors, total_ms in rows
        }


def _load_metadata(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
