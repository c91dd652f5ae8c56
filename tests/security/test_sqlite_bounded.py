"""The sqlite tool under readonly creates nothing and allocates little, whatever the
query (issue 13, classes "allowlisted commands that write" and "denial of service")."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from rho_actors import ToolContext, load_profile
from rho_actors.tools import SqliteTool

READONLY = load_profile("readonly")


def _ctx(work: Path) -> ToolContext:
    return ToolContext(session_id="s", call_id="c", working_dir=work)


def _wal_database(work: Path) -> Path:
    path = work / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x)")
    conn.execute("INSERT INTO t VALUES (1), (2)")
    conn.commit()
    conn.close()  # the last connection checkpoints and removes -wal/-shm
    assert sorted(p.name for p in work.iterdir()) == ["app.db"]
    return path


async def test_select_on_a_wal_database_creates_no_file(tmp_path: Path) -> None:
    _wal_database(tmp_path)
    out = await SqliteTool(READONLY).handle(
        {"database": "app.db", "sql": "SELECT count(*) FROM t"}, _ctx(tmp_path)
    )
    assert not out.is_error and "2" in out.content, out.content
    assert sorted(os.listdir(tmp_path)) == ["app.db"]


def test_control_a_plain_read_only_connection_creates_files(tmp_path: Path) -> None:
    """What the tool avoids: SQLite's own mode=ro leaves -wal and -shm behind while open."""
    path = _wal_database(tmp_path)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn.execute("SELECT count(*) FROM t").fetchall()
    names = sorted(p.name for p in tmp_path.iterdir())
    conn.close()
    assert names != ["app.db"]


async def test_a_huge_value_is_refused_not_built(tmp_path: Path) -> None:
    """`hex(zeroblob(1e8))` would take 200 MB; SQLite refuses it at the length limit."""
    _wal_database(tmp_path)
    out = await SqliteTool(READONLY).handle(
        {"database": "app.db", "sql": "SELECT hex(zeroblob(100000000))"}, _ctx(tmp_path)
    )
    assert out.is_error and "too big" in out.content, out.content


async def test_many_large_rows_stop_at_the_byte_budget(tmp_path: Path) -> None:
    """2,000 rows of 900 KB each would be 1.8 GB: the result stops at a few MB."""
    _wal_database(tmp_path)
    sql = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
        "SELECT i, randomblob(900000) FROM n"
    )
    out = await SqliteTool(READONLY).handle(
        {"database": "app.db", "sql": sql, "max_rows": 2000}, _ctx(tmp_path)
    )
    assert not out.is_error, out.content
    assert "more rows exist" in out.content
    assert out.content.count("<blob 900000 bytes>") < 20
