"""The telemetry database: batch writes, upserts, totals, costs, redaction, errors."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from rho_actors._errors import StoreError
from rho_actors._telemetry import (
    PRICES_PER_MILLION,
    RunRow,
    SessionRow,
    TelemetryDB,
    TelemetryRow,
    ToolRow,
    ToolStats,
    Totals,
    TurnRow,
    cost_usd,
    default_telemetry_path,
)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[TelemetryDB]:
    telemetry = TelemetryDB(tmp_path / "telemetry.db")
    yield telemetry
    telemetry.close()


def session(session_id: str, team: str = "t1", project: str = "p1", **fields: object) -> SessionRow:
    values: dict[str, object] = {
        "session_id": session_id,
        "team_id": team,
        "project_id": project,
        "model": "gpt-4o",
        "profile": "developer",
        "status": "running",
        "started_at": 100.0,
    }
    values.update(fields)
    return SessionRow(**values)  # type: ignore[arg-type]


def turn(session_id: str, run: int, number: int, **fields: object) -> TurnRow:
    values: dict[str, object] = {
        "session_id": session_id,
        "run": run,
        "turn": number,
        "model": "gpt-4o",
        "input_tokens": 100,
        "output_tokens": 10,
        "cached_tokens": 40,
        "reasoning_tokens": 2,
        "duration_ms": 50.0,
        "cost_usd": 0.01,
        "ts": 101.0,
    }
    values.update(fields)
    return TurnRow(**values)  # type: ignore[arg-type]


def run_row(session_id: str, run: int, **fields: object) -> RunRow:
    values: dict[str, object] = {
        "session_id": session_id,
        "run": run,
        "status": "completed",
        "duration_ms": 500.0,
        "started_at": 100.0,
        "ended_at": 100.5,
    }
    values.update(fields)
    return RunRow(**values)  # type: ignore[arg-type]


def tool(session_id: str, name: str, ms: float, error: str | None = None) -> ToolRow:
    return ToolRow(
        session_id=session_id,
        run=1,
        tool_name=name,
        duration_ms=ms,
        is_error=error is not None,
        error=error,
        ts=102.0,
    )


def fleet() -> list[TelemetryRow]:
    """Three sessions: two in team t1 (projects p1, p2), one in team t2."""
    return [
        session("a", "t1", "p1"),
        session("b", "t1", "p2"),
        session("c", "t2", "p1"),
        run_row("a", 1),
        run_row("a", 2),
        run_row("b", 1),
        run_row("c", 1),
        turn("a", 1, 1),
        turn("a", 1, 2),
        turn("a", 2, 1),
        turn("b", 1, 1),
        turn("c", 1, 1, cost_usd=None, model="local"),
        tool("a", "bash", 10.0),
        tool("a", "bash", 30.0, error="exit 1"),
        tool("b", "read_file", 5.0),
        tool("c", "bash", 20.0),
    ]


def test_batch_write_and_totals_per_scope(db: TelemetryDB) -> None:
    """One batch is summed correctly over everything, a team, a project and a session."""
    db.write(fleet())

    everything = db.totals()
    assert everything.sessions == 3 and everything.runs == 4 and everything.turns == 5
    assert everything.tool_calls == 4 and everything.tool_errors == 1
    assert everything.input_tokens == 500 and everything.output_tokens == 50
    assert everything.cached_tokens == 200 and everything.reasoning_tokens == 10
    assert everything.cost_usd == pytest.approx(0.04)
    assert everything.duration_ms == pytest.approx(2000.0)

    team = db.totals(team_id="t1")
    assert (team.sessions, team.runs, team.turns, team.tool_calls) == (2, 3, 4, 3)
    assert team.cost_usd == pytest.approx(0.04)

    project = db.totals(project_id="p1")
    assert (project.sessions, project.runs, project.turns) == (2, 3, 4)

    both = db.totals(team_id="t1", project_id="p1")
    assert (both.sessions, both.turns, both.input_tokens) == (1, 3, 300)

    one = db.totals(session_id="b")
    assert (one.sessions, one.runs, one.turns, one.tool_calls, one.tool_errors) == (1, 1, 1, 1, 0)

    assert db.totals(team_id="nobody") == Totals()


def test_unknown_costs_total_to_none(db: TelemetryDB) -> None:
    """A scope where no call had a known price reports cost None, not 0."""
    db.write(fleet())
    assert db.totals(team_id="t2").cost_usd is None
    assert db.totals(session_id="c").input_tokens == 100


def test_runs_without_turns_count_their_own_tokens(db: TelemetryDB) -> None:
    """A run recorded only as a summary contributes its tokens, without double counting."""
    db.write(
        [
            session("s"),
            run_row("s", 1, input_tokens=1000, output_tokens=100, cost_usd=0.5),
            run_row("s", 2, input_tokens=999, output_tokens=99, cost_usd=9.0),
            turn("s", 2, 1),
        ]
    )
    totals = db.totals(session_id="s")
    assert totals.input_tokens == 1100 and totals.output_tokens == 110
    assert totals.cost_usd == pytest.approx(0.51)


def test_session_upsert(db: TelemetryDB) -> None:
    """A later row for a session updates status and end time, keeping the first start."""
    db.write([session("s", metadata={"ticket": "T-1"})])
    db.write([session("s", status="completed", started_at=150.0, ended_at=160.0)])
    (row,) = db.sessions()
    assert row.status == "completed" and row.ended_at == 160.0
    assert row.started_at == 100.0
    assert row.metadata == {"ticket": "T-1"}
    assert db.totals().sessions == 1


def test_session_upsert_within_one_batch(db: TelemetryDB) -> None:
    """Start and end of a session in the same batch leave one row with the final status."""
    db.write([session("s"), session("s", status="error", ended_at=120.0)])
    (row,) = db.sessions()
    assert (row.status, row.ended_at) == ("error", 120.0)


def test_failed_batch_writes_nothing(db: TelemetryDB) -> None:
    """A row SQLite cannot store fails the whole batch with StoreError, and none of it lands."""
    db.write([session("before")])
    with pytest.raises(StoreError, match="cannot write telemetry") as info:
        db.write([session("s"), turn("s", 1, 1), turn("s", 1, 2, input_tokens=2**70)])
    assert info.value.path == str(db.path)
    assert [s.session_id for s in db.sessions()] == ["before"]
    assert db.totals().turns == 0
    db.write([turn("s", 1, 1)])
    assert db.totals().turns == 1


def test_rewritten_batch_does_not_double_count_turns(db: TelemetryDB) -> None:
    """Turns and runs are keyed, so writing the same ones twice counts them once."""
    rows: list[TelemetryRow] = [session("s"), run_row("s", 1), turn("s", 1, 1)]
    db.write(rows)
    db.write(rows)
    totals = db.totals()
    assert (totals.runs, totals.turns, totals.input_tokens) == (1, 1, 100)


def test_sessions_filter_and_order(db: TelemetryDB) -> None:
    """sessions() filters by team and project and lists oldest first."""
    db.write(
        [
            session("late", started_at=300.0),
            session("early", started_at=100.0),
            session("other", team="t2"),
        ]
    )
    assert [s.session_id for s in db.sessions(team_id="t1")] == ["early", "late"]
    assert [s.session_id for s in db.sessions(project_id="p1")] == ["early", "other", "late"]


def test_tool_stats(db: TelemetryDB) -> None:
    """tool_stats() gives per-tool calls, errors, total and mean time."""
    db.write(fleet())
    assert db.tool_stats() == {
        "bash": ToolStats(calls=3, errors=1, total_ms=60.0, mean_ms=20.0),
        "read_file": ToolStats(calls=1, errors=0, total_ms=5.0, mean_ms=5.0),
    }
    assert db.tool_stats(team_id="t1", project_id="p1") == {
        "bash": ToolStats(calls=2, errors=1, total_ms=40.0, mean_ms=20.0)
    }


def test_secret_metadata_is_redacted(db: TelemetryDB) -> None:
    """Values under key/token/secret/password keys never reach the file."""
    metadata = {
        "OpenAI_API_Key": "sk-live-123",
        "auth": {"access_TOKEN": "tok-456", "user": "ann"},
        "db_password": "hunter2",
        "ClientSecret": "s3cr3t",
        "ticket": "T-9",
    }
    db.write([session("s", metadata=metadata)])
    db.close()
    (row,) = db.sessions()
    assert row.metadata == {
        "OpenAI_API_Key": "[redacted]",
        "auth": {"access_TOKEN": "[redacted]", "user": "ann"},
        "db_password": "[redacted]",
        "ClientSecret": "[redacted]",
        "ticket": "T-9",
    }
    raw = db.path.read_bytes()
    for secret in (b"sk-live-123", b"tok-456", b"hunter2", b"s3cr3t"):
        assert secret not in raw


def test_second_object_reads_what_first_wrote(tmp_path: Path) -> None:
    """A second TelemetryDB on the file sees committed rows, with the writer open or closed."""
    path = tmp_path / "shared.db"
    writer = TelemetryDB(path)
    reader = TelemetryDB(path)
    try:
        writer.write(fleet())
        assert reader.totals().turns == 5
        writer.write([turn("a", 3, 1)])
        assert reader.totals(session_id="a").turns == 4
        writer.close()
        assert reader.totals().turns == 6
        assert [s.session_id for s in reader.sessions()] == ["a", "b", "c"]
    finally:
        writer.close()
        reader.close()


def test_queries_before_any_write_are_empty_and_create_nothing(tmp_path: Path) -> None:
    """Querying a path never written reads as empty and leaves no file behind."""
    db = TelemetryDB(tmp_path / "missing" / "telemetry.db")
    assert db.totals() == Totals()
    assert db.sessions() == [] and db.tool_stats() == {}
    assert not (tmp_path / "missing").exists()


def test_schema_and_pragmas(db: TelemetryDB) -> None:
    """The file is in WAL mode and records its schema version."""
    db.write([session("s")])
    with contextlib.closing(sqlite3.connect(db.path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database from a newer schema raises StoreError instead of being written."""
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (99)")
    conn.commit()
    conn.close()
    db = TelemetryDB(path)
    with pytest.raises(StoreError, match="schema version 99") as info:
        db.write([session("s")])
    assert info.value.path == str(path)


@pytest.mark.parametrize("layout", ["directory", "parent_is_file"])
def test_bad_path_raises_store_error_naming_it(tmp_path: Path, layout: str) -> None:
    """A path that cannot hold a database raises StoreError naming the path."""
    if layout == "directory":
        path = tmp_path / "telemetry.db"
        path.mkdir()
    else:
        (tmp_path / "plain").write_text("not a directory")
        path = tmp_path / "plain" / "telemetry.db"
    db = TelemetryDB(path)
    with pytest.raises(StoreError) as info:
        db.write([session("s")])
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    if layout == "directory":
        with pytest.raises(StoreError) as query_info:
            db.totals()
        assert query_info.value.path == str(path)
    db.close()


def test_empty_batch_touches_nothing(tmp_path: Path) -> None:
    """Writing no rows does not create the database."""
    db = TelemetryDB(tmp_path / "t.db")
    db.write([])
    assert not (tmp_path / "t.db").exists()


def test_known_costs() -> None:
    """Known models are priced at list price, cached input at the cached rate."""
    input_rate, cached_rate, output_rate = PRICES_PER_MILLION["gpt-4o"]
    expected = (600_000 * input_rate + 400_000 * cached_rate + 100_000 * output_rate) / 1e6
    assert cost_usd("gpt-4o", 1_000_000, 100_000, 400_000) == pytest.approx(expected)
    assert cost_usd("gpt-5-mini", 1_000_000, 0, 0) == pytest.approx(0.25)
    assert cost_usd("gpt-4o-2024-08-06", 1_000_000, 0) == cost_usd("gpt-4o", 1_000_000, 0)
    assert cost_usd("gpt-4o-mini-2024-07-18", 0, 1_000_000) == pytest.approx(0.60)


def test_unknown_costs() -> None:
    """Unknown models, and near-misses of known ones, have no price."""
    assert cost_usd("llama-3-70b", 1000, 1000, 0) is None
    assert cost_usd("o3-pro", 1000, 1000, 0) is None
    assert cost_usd("scripted", 0, 0, 0) is None


def test_cached_tokens_never_exceed_input() -> None:
    """Cached tokens beyond the input count are not billed twice or negatively."""
    all_cached = cost_usd("gpt-4.1", 1000, 0, 1000)
    assert cost_usd("gpt-4.1", 1000, 0, 5000) == all_cached


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The env var wins; otherwise the file lives under XDG_CONFIG_HOME."""
    monkeypatch.setenv("RHO_ACTORS_TELEMETRY_DB", str(tmp_path / "explicit.db"))
    assert default_telemetry_path() == tmp_path / "explicit.db"
    monkeypatch.delenv("RHO_ACTORS_TELEMETRY_DB")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_telemetry_path() == tmp_path / "xdg" / "rho-actors" / "telemetry.db"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_telemetry_path() == tmp_path / "home" / ".config" / "rho-actors" / "telemetry.db"
