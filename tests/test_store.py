"""SessionStore and the Store actor: files, listing, resume, durability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import trio

from rho_actors import Agent, Session, SessionStore, State, open_supervisor
from rho_actors._store._actor import serve_store
from rho_actors._store._backend import DirectoryBackend
from rho_actors.testing import Reply, ScriptedServer


async def test_session_directory_layout(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """A persisted session has config.yaml, trace.jsonl and meta.json."""
    server.add(Reply.text("stored"))
    session = store.create_session(make_agent(api_key="sk-very-secret"))
    await session.run(prompt="remember this")
    folder = store.path / session.id
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "meta.json", "trace.jsonl"]
    lines = [json.loads(line) for line in (folder / "trace.jsonl").read_text().splitlines()]
    assert lines[0]["type"] == "session_start"
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    assert all({"ts", "seq", "type"} <= set(line) for line in lines)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["first_prompt"] == "remember this"
    for path in folder.iterdir():
        assert "sk-very-secret" not in path.read_text()


async def test_list_latest_and_resume(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """list() and get_latest_id() see sessions; resume() restores them exactly."""
    agent = make_agent()
    server.add(Reply.text("a1"), Reply.text("b1"), Reply.text("a2"))
    first = store.create_session(agent)
    await first.run(prompt="first session")
    second = store.create_session(agent)
    await second.run(prompt="second session")
    await first.run(prompt="first again")
    infos = store.list()
    assert [i.id for i in infos] == [first.id, second.id]
    assert infos[0].first_prompt == "first session" and infos[0].run_count == 2
    assert store.get_latest_id() == second.id

    resumed = store.resume(first.id, agent)
    assert resumed.state.messages == first.state.messages
    assert resumed.state.usage == first.state.usage
    assert resumed.state.run_count == 2 and resumed.state.status == "completed"
    server.add(Reply.text("continued"))
    result = await resumed.run(prompt="continue")
    assert result.text == "continued"
    assert store.resume(first.id, agent).state.run_count == 3


async def test_resume_after_torn_trace_line(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """A simulated crash mid-write (torn last line) still resumes."""
    agent = make_agent()
    server.add(Reply.text("ok"))
    session = store.create_session(agent)
    await session.run(prompt="before crash")
    trace = store.path / session.id / "trace.jsonl"
    await trio.Path(trace).write_bytes(
        await trio.Path(trace).read_bytes() + b'{"ts": 1.0, "seq": 999, "type": "mess'
    )
    resumed = store.resume(session.id, agent)
    assert resumed.state.messages == session.state.messages
    server.add(Reply.text("after"))
    assert (await resumed.run(prompt="after crash")).status == "completed"


async def test_group_commit_from_many_sessions(tmp_path: Path) -> None:
    """Concurrent appends from many sessions are all committed and acknowledged."""
    backend = DirectoryBackend(tmp_path)
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(serve_store, backend)

        async def writer(i: int) -> None:
            await ref.create(f"s{i}", "model: m\n", {"id": f"s{i}"}, [])
            for j in range(20):
                await ref.append(f"s{i}", [json.dumps({"seq": j}).encode() + b"\n"])

        try:
            async with trio.open_nursery() as writers:
                for i in range(50):
                    writers.start_soon(writer, i)
        finally:
            ref.close()
    for i in range(50):
        lines = (tmp_path / f"s{i}" / "trace.jsonl").read_text().splitlines()
        assert [json.loads(x)["seq"] for x in lines] == list(range(20))


async def test_supervisor_sessions_share_one_store(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """Sessions under a supervisor with a store are persisted and resumable."""
    agent = make_agent()
    server.default = lambda request: Reply.text("r")
    async with open_supervisor(store=store) as sup:
        sessions = [await sup.start_session(agent) for _ in range(5)]
        async with trio.open_nursery() as nursery:
            for s in sessions:
                nursery.start_soon(s.run, "hi")
    assert {i.id for i in store.list()} == {s.id for s in sessions}
    for s in sessions:
        assert store.load_state(s.id).messages == s.state.messages


_CHILD = textwrap.dedent(
    """
    import sys, trio
    from rho_actors import Agent, AgentConfig, SessionStore
    from rho_actors.testing import Reply, open_scripted_server

    async def main():
        async with open_scripted_server(default=lambda r: Reply.text("ack")) as server:
            agent = Agent(AgentConfig(base_url=server.base_url, model="m", profile="readonly"))
            store = SessionStore(sys.argv[1])
            session = store.create_session(agent)
            for i in range(3):
                await session.run(prompt=f"prompt {i}")
            print(session.id, flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


async def test_acknowledged_records_survive_kill_9(tmp_path: Path) -> None:
    """Runs that returned are fully on disk even if the process is killed with SIGKILL."""
    root = tmp_path / "sessions"
    proc = subprocess.Popen(  # noqa: ASYNC220 - we need the pid to SIGKILL it
        [sys.executable, "-c", _CHILD, str(root)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        with trio.fail_after(60):
            line = await trio.to_thread.run_sync(proc.stdout.readline)
        session_id = line.decode().strip()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    state = State.replay(DirectoryBackend(root).load(session_id), session_id)
    assert state.run_count == 3
    assert [m["content"] for m in state.messages if m["role"] == "user"] == [
        "prompt 0",
        "prompt 1",
        "prompt 2",
    ]
    # A standalone Session without a store writes nothing.
    assert not (tmp_path / "default-sessions").exists()
    assert isinstance(Session, type)
