"""One contract, three backends: session directories (JSONL), one SQLite file, and a
real PostgreSQL server (issue 16). Every test here runs against each, through the
public SessionStore and supervisors, with the real openai client against the
scripted server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg_server as postgres
import pytest
import trio

from rho_actors import (
    Agent,
    SessionStore,
    StoreError,
    function_tool,
    open_supervisor,
)
from rho_actors._store._actor import serve_store
from rho_actors._store._sql import SCHEMA_VERSION
from rho_actors.testing import Reply, ScriptedServer


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[str]:
    reason = postgres.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres.postgres_server() as url:
        yield url


@pytest.fixture(params=["jsonl", "sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    kind = request.param
    if kind == "jsonl":
        return str(tmp_path / "sessions")
    if kind == "sqlite":
        return f"sqlite:{tmp_path / 'sessions.db'}"
    admin: str = request.getfixturevalue("postgres_admin")
    return postgres.fresh_database(admin)


async def test_runs_persist_and_replay_exactly(
    server: ScriptedServer, make_agent: Callable[..., Agent], location: str
) -> None:
    store = SessionStore(location)
    agent = make_agent()
    server.add(Reply.text("a1"), Reply.text("b1"), Reply.text("a2"))
    first = store.create_session(agent)
    await first.run(prompt="first session")
    second = store.create_session(agent)
    await second.run(prompt="second session")
    await first.run(prompt="first again")
    infos = SessionStore(location).list()  # a new store object: nothing cached
    assert [i.id for i in infos] == [first.id, second.id]
    assert infos[0].first_prompt == "first session" and infos[0].run_count == 2
    assert infos[0].status == "completed"
    resumed = SessionStore(location).resume(first.id, agent)
    assert resumed.state.messages == first.state.messages
    assert resumed.state.usage == first.state.usage
    assert resumed.state.run_count == 2
    server.add(Reply.text("continued"))
    assert (await resumed.run(prompt="continue")).text == "continued"
    assert SessionStore(location).resume(first.id, agent).state.run_count == 3


async def test_records_are_numbered_per_session_and_append_only(
    server: ScriptedServer, make_agent: Callable[..., Agent], location: str
) -> None:
    store = SessionStore(location)
    server.default = lambda request: Reply.text("r")
    async with open_supervisor(store=store) as supervisor:
        sessions = [await supervisor.start_session(make_agent()) for _ in range(6)]
        async with trio.open_nursery() as nursery:
            for session in sessions:
                for i in range(3):
                    nursery.start_soon(session.run, f"prompt {i}")
    for session in sessions:
        envelopes = store.backend.load(session.id)
        seqs = [e.seq for e in envelopes]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert store.load_state(session.id).run_count == 3


async def test_group_commit_isolates_a_failing_session(location: str) -> None:
    """One bad session in a batch fails alone; the others are committed."""
    store = SessionStore(location)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(serve_store, store.backend)
        try:
            await ref.create("good", "model: m\n", {"id": "good"}, [])
            failures = await trio.to_thread.run_sync(
                store.backend.append,
                {
                    "good": [b'{"ts":1,"seq":1,"type":"status","status":"idle"}\n'],
                    "nobody": [b"{}\n"],
                },
            )
        finally:
            ref.close()
    assert set(failures) == {"nobody"}
    assert len(store.backend.load("good")) == 1


async def test_pending_approvals_survive_a_new_process(
    server: ScriptedServer, make_agent: Callable[..., Agent], location: str
) -> None:
    ran: list[str] = []

    async def launch(target: str) -> str:
        """Launch something."""
        ran.append(target)
        return "launched"

    def agent() -> Agent:
        made = make_agent(auto_approve=False)
        made.registry.register(function_tool(launch, requires_approval=True))
        return made

    server.add(Reply.tool_call("launch", {"target": "x"}, id="p1"))
    session = SessionStore(location).create_session(agent())
    assert (await session.run(prompt="go")).status == "paused"
    reloaded = SessionStore(location).resume(session.id, agent())
    assert [p.tool_call_id for p in reloaded.state.pending_approvals] == ["p1"]
    await reloaded.approve("p1")
    server.add(Reply.text("done"))
    assert (await reloaded.resume()).text == "done"
    assert ran == ["x"]
    assert SessionStore(location).load_state(session.id).pending_approvals == []


async def test_compaction_persists(
    server: ScriptedServer, make_agent: Callable[..., Agent], location: str
) -> None:
    store = SessionStore(location)
    session = store.create_session(make_agent())
    server.add(Reply.text("a"), Reply.text("b"), Reply.text("c"), Reply.text("SUMMARY"))
    for prompt in ("one", "two", "three"):
        await session.run(prompt=prompt)
    await session.compact()
    again = SessionStore(location).load_state(session.id)
    assert again.compactions == 1
    assert again.messages == session.state.messages
    assert any("SUMMARY" in str(m.get("content")) for m in again.messages)


async def test_a_stale_meta_is_rebuilt_from_the_trace(
    server: ScriptedServer, make_agent: Callable[..., Agent], location: str
) -> None:
    store = SessionStore(location)
    session = store.create_session(make_agent())
    server.add(Reply.text("a"), Reply.text("b"))
    await session.run(prompt="one")
    await session.run(prompt="two")
    store.backend.write_meta(session.id, {"id": session.id, "status": "idle", "run_count": 99})
    # Make the meta describe an older trace (as after a crash between writes).
    _age_meta(store, session.id)
    (info,) = SessionStore(location).list()
    assert info.run_count == 2 and info.status == "completed"


def _age_meta(store: SessionStore, session_id: str) -> None:
    meta = store.backend.read_meta(session_id) or {}
    meta["trace_size"] = 1
    if store.location.startswith(("postgresql", "postgres")) or store.location.endswith(".db"):
        backend: Any = store.backend
        with backend._tx("age meta") as conn:
            backend._q(
                conn,
                "UPDATE rho_sessions SET meta = ? WHERE id = ?",
                (json.dumps(meta), session_id),
            )
    else:
        (store.path / session_id / "meta.json").write_text(json.dumps(meta))


def test_cancel_requests_and_configs(location: str) -> None:
    store = SessionStore(location)
    backend = store.backend
    backend.create("s1", "model: m\n", {"id": "s1"}, [])
    backend.write_config("s1", "model: other\n")
    assert backend.read_config("s1") == "model: other\n"
    assert backend.exists("s1") and not backend.exists("s2")
    backend.request_cancel("s1", "stop please")
    assert backend.take_cancel_requests() == {"s1": "stop please"}
    assert backend.take_cancel_requests() == {}
    with pytest.raises(StoreError):
        backend.create("s1", "model: m\n", {"id": "s1"}, [])
    with pytest.raises(StoreError, match="no such session"):
        backend.load("missing")


# --- SQL specifics -------------------------------------------------------------------


def test_sqlite_store_is_one_wal_file(tmp_path: Path) -> None:
    path = tmp_path / "one.db"
    store = SessionStore(f"sqlite:{path}")
    store.backend.create("s1", "model: m\n", {"id": "s1"}, [])
    store.backend.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT max(version) FROM rho_schema").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".db"] == ["one.db"]


def test_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SessionStore(f"sqlite:{path}").backend.close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO rho_schema (version, applied_at) VALUES (99, 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this rho-actors"):
        SessionStore(f"sqlite:{path}")


def test_store_migrate_command(tmp_path: Path) -> None:
    target = f"sqlite:{tmp_path / 'm.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "rho_actors", "store", "migrate", "--store", target],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stderr
    assert f"schema version {SCHEMA_VERSION}" in done.stdout


def test_an_unreachable_postgres_is_a_clear_error() -> None:
    with pytest.raises(StoreError) as raised:
        SessionStore("postgresql://rho:secret@127.0.0.1:9/none?connect_timeout=2")
    assert "127.0.0.1" in str(raised.value) and "secret" not in str(raised.value)
