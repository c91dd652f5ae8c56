"""The ``sqlite`` tool: query a SQLite database file.

Read-only is enforced by SQLite itself, not by looking at the SQL: a regex
cannot tell that ``WITH x AS (SELECT 1) DELETE FROM t`` writes. Under a
``readonly`` database mode the connection is opened with ``mode=ro``, then
``PRAGMA query_only=ON``, then an authorizer refuses every write action and
every pragma that sets something (so ``PRAGMA query_only=OFF`` cannot undo
the rest). In every mode the authorizer refuses ``ATTACH`` (which also
guards ``VACUUM INTO``): both create files anywhere, outside the working
directory's confinement. One statement per call; ``executescript`` is never
used.

Queries run in a worker thread under a progress handler that stops them at
the time limit or as soon as the call is cancelled.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._errors import InvalidToolArguments
from .._tools import JSONSchema, ToolContext, ToolOutput
from ._common import (
    ProfileTool,
    error,
    get_int,
    get_optional_str,
    get_str,
    resolve_shown,
    truncate_lines,
)

__all__ = ["SqliteTool"]

DEFAULT_MAX_ROWS = 100
MAX_ROWS = 2000
MAX_CELL_CHARS = 200
DEFAULT_TIMEOUT = 30.0
_PROGRESS_STEPS = 1000
# No value (string, blob, row, SQL text) may exceed this: `hex(zeroblob(1e8))`
# fails with "string or blob too big" instead of allocating gigabytes.
MAX_VALUE_BYTES = 1 << 20
# What a result may hold in memory before the rest is left unread.
MAX_RESULT_BYTES = 8 << 20

_WRITE_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_INSERT,
        sqlite3.SQLITE_UPDATE,
        sqlite3.SQLITE_DELETE,
        sqlite3.SQLITE_CREATE_INDEX,
        sqlite3.SQLITE_CREATE_TABLE,
        sqlite3.SQLITE_CREATE_TEMP_INDEX,
        sqlite3.SQLITE_CREATE_TEMP_TABLE,
        sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
        sqlite3.SQLITE_CREATE_TEMP_VIEW,
        sqlite3.SQLITE_CREATE_TRIGGER,
        sqlite3.SQLITE_CREATE_VIEW,
        sqlite3.SQLITE_CREATE_VTABLE,
        sqlite3.SQLITE_DROP_INDEX,
        sqlite3.SQLITE_DROP_TABLE,
        sqlite3.SQLITE_DROP_TEMP_INDEX,
        sqlite3.SQLITE_DROP_TEMP_TABLE,
        sqlite3.SQLITE_DROP_TEMP_TRIGGER,
        sqlite3.SQLITE_DROP_TEMP_VIEW,
        sqlite3.SQLITE_DROP_TRIGGER,
        sqlite3.SQLITE_DROP_VIEW,
        sqlite3.SQLITE_DROP_VTABLE,
        sqlite3.SQLITE_ALTER_TABLE,
        sqlite3.SQLITE_REINDEX,
        sqlite3.SQLITE_ANALYZE,
    }
)
# Pragmas whose argument names a thing to inspect rather than a value to set.
_INSPECTING_PRAGMAS = frozenset(
    {
        *("table_info", "table_xinfo", "index_list", "index_info", "index_xinfo"),
        *("foreign_key_list", "foreign_key_check", "integrity_check", "quick_check", "table_list"),
    }
)
# Pragmas that change something even without a value.
_ACTING_PRAGMAS = frozenset({"wal_checkpoint", "optimize", "incremental_vacuum", "shrink_memory"})
_FORBIDDEN_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}
)


@attrs.frozen(slots=True)
class SqliteTool(ProfileTool):
    """Runs one SQL statement, or lists/describes tables, against a database file."""

    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, kw_only=True)

    @property
    def name(self) -> str:
        return "sqlite"

    @property
    def description(self) -> str:
        mode = (
            "The database is opened read-only."
            if self.profile.database == "readonly"
            else "Statements may change the database."
        )
        return (
            "Query a SQLite database file. operation 'list_tables' lists tables and views, "
            "'describe' shows a table's columns, 'query' runs one SQL statement (results as a "
            f"table, at most max_rows rows). {mode}"
        )

    @property
    def parameters(self) -> JSONSchema:
        return {
            "type": "object",
            "properties": {
                "database": {"type": "string", "description": "Path to the database file."},
                "operation": {
                    "type": "string",
                    "enum": ["query", "list_tables", "describe"],
                    "description": "What to do (default 'query').",
                },
                "sql": {"type": "string", "description": "The SQL statement, for 'query'."},
                "table": {"type": "string", "description": "The table, for 'describe'."},
                "max_rows": {
                    "type": "integer",
                    "minimum": 1,
                    "description": f"At most this many rows (default {DEFAULT_MAX_ROWS}).",
                },
            },
            "required": ["database"],
            "additionalProperties": False,
        }

    @property
    def readonly(self) -> bool:
        return self.profile.database == "readonly"

    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        operation = get_str(args, "operation", default="query")
        if operation not in ("query", "list_tables", "describe"):
            raise InvalidToolArguments(
                f"'operation' must be query, list_tables or describe, got {operation!r}"
            )
        sql = get_optional_str(args, "sql")
        table = get_optional_str(args, "table")
        if operation == "query" and not (sql and sql.strip()):
            raise InvalidToolArguments("'sql' is required for operation 'query'")
        if operation == "describe" and not table:
            raise InvalidToolArguments("'table' is required for operation 'describe'")
        max_rows = get_int(args, "max_rows", default=DEFAULT_MAX_ROWS, minimum=1, maximum=MAX_ROWS)
        path, shown = await resolve_shown(
            get_str(args, "database", required=True), ctx, self.profile
        )
        readonly = self.profile.database == "readonly"
        creatable = not readonly and self.profile.file_write != "off"
        if not creatable and not await trio.Path(path).is_file():
            return error(f"sqlite: database {shown} does not exist")
        job = _Job(
            path=path,
            readonly=readonly,
            create=self.profile.file_write != "off",
            deadline=time.monotonic() + self.timeout,
        )
        try:
            result = await trio.to_thread.run_sync(
                job.run, operation, sql, table, max_rows, abandon_on_cancel=True
            )
        finally:
            job.stop.set()  # if abandoned, the progress handler ends the query
        if isinstance(result, _Failed):
            return error(f"sqlite: {shown}: {result.message}")
        return ToolOutput(content=truncate_lines(result, self.profile.max_output_chars))


@attrs.frozen(slots=True)
class _Failed:
    message: str


@attrs.define
class _Job:
    path: Path
    readonly: bool
    create: bool
    deadline: float
    stop: threading.Event = attrs.field(factory=threading.Event)

    def run(
        self, operation: str, sql: str | None, table: str | None, max_rows: int
    ) -> str | _Failed:
        mode = "ro" if self.readonly else ("rwc" if self.create else "rw")
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode={mode}"
        if self.readonly and not self.path.with_name(self.path.name + "-wal").exists():
            # Even a read-only connection creates -wal/-shm files beside a WAL
            # database; with no -wal file the main file is the whole database,
            # and `immutable` reads it without creating or locking anything.
            uri += "&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            return _Failed(f"cannot open database: {exc}")
        try:
            conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
            if self.readonly:
                conn.execute("PRAGMA query_only=ON")
            conn.set_authorizer(self._authorize)
            conn.set_progress_handler(self._should_stop, _PROGRESS_STEPS)
            if operation == "list_tables":
                return _list_tables(conn)
            if operation == "describe":
                assert table is not None
                return _describe(conn, table)
            assert sql is not None
            return self._query(conn, sql, max_rows)
        except sqlite3.Error as exc:
            return _Failed(self._explain(exc))
        finally:
            conn.close()

    def _should_stop(self) -> int:
        return 1 if self.stop.is_set() or time.monotonic() > self.deadline else 0

    def _authorize(
        self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
    ) -> int:
        if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _FORBIDDEN_FUNCTIONS:
            return sqlite3.SQLITE_DENY
        if not self.readonly:
            return sqlite3.SQLITE_OK
        if action in _WRITE_ACTIONS:
            return sqlite3.SQLITE_DENY
        if action == sqlite3.SQLITE_PRAGMA:
            pragma = (arg1 or "").lower()
            if pragma in _ACTING_PRAGMAS:
                return sqlite3.SQLITE_DENY
            if arg2 is not None and pragma not in _INSPECTING_PRAGMAS:
                return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    def _explain(self, exc: sqlite3.Error) -> str:
        message = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and message == "interrupted":
            if self.stop.is_set():
                return "query cancelled"
            return "query stopped: it ran past the time limit"
        if self.readonly and (
            "not authorized" in message or "readonly" in message or "read-only" in message
        ):
            return f"refused, the database is read-only under this profile ({message})"
        if "not authorized" in message:
            return f"refused ({message}): ATTACH and file functions are not allowed"
        return f"{type(exc).__name__}: {message}"

    def _query(self, conn: sqlite3.Connection, sql: str, max_rows: int) -> str:
        cursor = conn.execute(sql)
        if cursor.description is None:
            changed = cursor.rowcount
            return (
                f"OK ({changed} row{'s' if changed != 1 else ''} changed)" if changed >= 0 else "OK"
            )
        columns = [d[0] for d in cursor.description]
        rows: list[Any] = []
        size = 0
        more = False
        for row in cursor:
            if len(rows) == max_rows or size > MAX_RESULT_BYTES:
                more = True
                break
            rows.append(row)
            size += sum(len(v) if isinstance(v, str | bytes) else 8 for v in row)
        return _table(columns, rows, more=more)


def _list_tables(conn: sqlite3.Connection) -> str:
    rows = conn.execute(
        "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite_%' ORDER BY name"
    ).fetchall()
    if not rows:
        return "(no tables)"
    return "\n".join(f"{name} ({kind})" for name, kind in rows)


def _describe(conn: sqlite3.Connection, table: str) -> str | _Failed:
    row = conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = ? AND type IN ('table', 'view')", (table,)
    ).fetchone()
    if row is None:
        return _Failed(f"no table or view named {table!r}")
    quoted = '"' + table.replace('"', '""') + '"'
    columns = conn.execute(f"PRAGMA table_info({quoted})").fetchall()
    body = _table(
        ["column", "type", "not null", "default", "primary key"],
        [(c[1], c[2], bool(c[3]), c[4], c[5]) for c in columns],
        more=False,
        count=False,
    )
    return f"{body}\n\n{row[0]}" if row[0] else body


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes):
        return f"<blob {len(value)} bytes>"
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "..."


def _table(columns: list[str], rows: list[Any], *, more: bool, count: bool = True) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        min(MAX_CELL_CHARS, max([len(c)] + [len(r[i]) for r in cells]))
        for i, c in enumerate(columns)
    ]
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
        "-+-".join("-" * w for w in widths),
    ]
    lines += [
        " | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells
    ]
    if count:
        noun = "row" if len(rows) == 1 else "rows"
        lines.append(
            f"({len(rows)} {noun} shown; more rows exist, raise max_rows or add LIMIT/WHERE)"
            if more
            else f"({len(rows)} {noun})"
        )
    return "\n".join(lines)
