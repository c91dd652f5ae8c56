"""The trace protocol under faults: full disks, short writes, torn tails, lost metas,
corrupt traces, kill -9 at any point, and a long soak of stopped sessions."""

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
import trio.testing

from rho_actors import (
    Agent,
    ChildSpec,
    DirectoryBackend,
    SessionStore,
    State,
    open_supervisor,
)
from rho_actors.testing import DiskFaults, Reply, ScriptedServer


def _trace(store: SessionStore, session_id: str) -> Path:
    return store.path / session_id / "trace.jsonl"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


async def test_disk_full_mid_append_is_never_acknowledged(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """A write that stops part way fails the run, leaves no partial record, and the
    session loads and runs again once there is space."""
    faults = DiskFaults()
    store = SessionStore(backend=DirectoryBackend(tmp_path / "s", write=faults))
    server.default = lambda request: Reply.text("fine")
    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(make_agent())
        assert (await session.run("first")).status == "completed"
        before = _trace(store, session.id).read_bytes()
        faults.fill(after=40)  # the next record gets 40 bytes in, then ENOSPC
        failed = await session.run("second")
        assert failed.status == "error" and "disk full" in (failed.error or "")
        assert faults.failures >= 1
        on_disk = _trace(store, session.id).read_bytes()
        assert on_disk == before  # complete or absent: nothing of the failed append
        faults.free()
        assert (await session.run("third")).status == "completed"
    state = store.load_state(session.id)
    prompts = [m["content"] for m in state.messages if m["role"] == "user"]
    assert prompts[0] == "first" and prompts[-1] == "third"
    assert store.list()[0].status == "completed"


async def test_short_writes_are_continued(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """Every write returning a few bytes at a time still yields whole records."""
    store = SessionStore(backend=DirectoryBackend(tmp_path / "s", write=DiskFaults(max_chunk=7)))
    server.add(Reply.text("a reply that takes many short writes to record"))
    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(make_agent())
        assert (await session.run("hello")).status == "completed"
    assert store.load_state(session.id).messages == session.state.messages


async def test_a_failed_creation_leaves_nothing_and_is_retried_whole(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """A session directory is complete (config, meta, session_start) or absent."""
    faults = DiskFaults()
    store = SessionStore(backend=DirectoryBackend(tmp_path / "s", write=faults))
    server.default = lambda request: Reply.text("ok")
    faults.fill(after=10)
    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(make_agent())
        failed = await session.run("first")
        assert failed.status == "error" and "create session" in (failed.error or "")
        assert store.list() == []
        assert [p.name for p in (tmp_path / "s").iterdir()] == []
        faults.free()
        assert (await session.run("second")).status == "completed"
    folder = store.path / session.id
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "meta.json", "trace.jsonl"]
    first_line = json.loads(_trace(store, session.id).read_bytes().split(b"\n")[0])
    assert first_line["type"] == "session_start"
    assert [info.id for info in store.list()] == [session.id]


async def test_a_torn_tail_is_fenced_before_the_next_append(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """A crash mid-write leaves a partial line; the next append never glues onto it."""
    server.default = lambda request: Reply.text("ok")
    agent = make_agent()
    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(agent)
        await session.run("before the crash")
    trace = _trace(store, session.id)
    with trace.open("ab") as fh:
        fh.write(b'{"ts": 1.0, "seq": 99, "type": "message", "message": {"role": "us')
    async with open_supervisor(store=store) as sup:
        resumed = await sup.resume_session(session.id, agent)
        assert (await resumed.run("after the crash")).status == "completed"
    data = trace.read_bytes()
    assert data.endswith(b"\n") and b'"us{' not in data
    state = store.load_state(session.id)  # every line parses: nothing glued
    prompts = [m["content"] for m in state.messages if m["role"] == "user"]
    assert prompts == ["before the crash", "after the crash"]


async def test_a_missing_or_garbage_meta_is_rebuilt_from_the_trace(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """meta.json is a cache: without it the session is still listed, as the trace says."""
    server.default = lambda request: Reply.text("ok")
    async with open_supervisor(store=store) as sup:
        a = await sup.start_session(make_agent(model="model-a"))
        b = await sup.start_session(make_agent(model="model-b"))
        await a.run("the first prompt of a")
        await b.run("the first prompt of b")
    (store.path / a.id / "meta.json").unlink()
    (store.path / b.id / "meta.json").write_bytes(b"{not json")
    infos = {info.id: info for info in store.list()}
    assert set(infos) == {a.id, b.id}
    assert infos[a.id].status == "completed" and infos[a.id].model == "model-a"
    assert infos[a.id].first_prompt == "the first prompt of a"
    assert infos[b.id].run_count == 1 and infos[b.id].model == "model-b"


async def test_interrupted_is_read_from_the_trace_not_the_meta(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """A run start without a run end (and no live process) is interrupted; a run end
    whose meta write was lost is finished."""
    server.default = lambda request: Reply.text("ok")
    async with open_supervisor(store=store) as sup:
        open_run = await sup.start_session(make_agent())
        finished = await sup.start_session(make_agent())
        await open_run.run("one")
        await finished.run("one")
    dead = _dead_pid()
    # open_run: a second run started (acknowledged) but the process died
    # before the meta said so, and before any run end.
    stale_meta = json.loads((store.path / open_run.id / "meta.json").read_bytes())
    with _trace(store, open_run.id).open("ab") as fh:
        fh.write(
            json.dumps(
                {"ts": 2.0, "seq": 50, "type": "run_start", "run": 2, "prompt": "two"}
            ).encode()
            + b"\n"
        )
    stale_meta["pid"] = dead
    (store.path / open_run.id / "meta.json").write_text(json.dumps(stale_meta))
    # finished: its meta still says running (the last meta write was lost).
    meta = json.loads((store.path / finished.id / "meta.json").read_bytes())
    meta.update(status="running", pid=dead, trace_size=1)
    (store.path / finished.id / "meta.json").write_text(json.dumps(meta))
    infos = {info.id: info.status for info in store.list()}
    assert infos == {open_run.id: "interrupted", finished.id: "completed"}


async def test_one_corrupt_session_is_reported_and_the_others_are_served(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """list() and recover() report a corrupt session (file, reason) and go on."""
    server.default = lambda request: Reply.text("ok")
    agent = make_agent()
    async with open_supervisor(store=store) as sup:
        bad = await sup.start_session(agent)
        good = await sup.start_session(agent)
        await bad.run("one")
        await good.run("one")
    for session in (bad, good):  # both look interrupted: a run start, no end, no process
        meta = json.loads((store.path / session.id / "meta.json").read_bytes())
        meta.update(status="running", pid=_dead_pid(), trace_size=None)
        (store.path / session.id / "meta.json").write_text(json.dumps(meta))
        with _trace(store, session.id).open("ab") as fh:
            fh.write(b'{"ts":3.0,"seq":60,"type":"run_start","run":2,"prompt":"two"}\n')
    trace = _trace(store, bad.id)
    lines = trace.read_bytes().split(b"\n")
    lines[2] = b"garbage in the middle"
    trace.write_bytes(b"\n".join(lines))

    infos = {info.id: info for info in store.list()}
    assert infos[bad.id].status == "corrupt"
    assert "corrupt trace line 3" in (infos[bad.id].error or "")
    assert "trace.jsonl" in (infos[bad.id].error or "")
    assert infos[good.id].status == "interrupted"
    async with open_supervisor(store=store) as sup:
        recovered = await sup.recover(agent_factory=lambda session_id: agent)
        assert [s.id for s in recovered] == [good.id]
        assert len(sup.recovery_failures) == 1 and bad.id in str(sup.recovery_failures[0])
        assert (await recovered[0].resume()).status == "completed"


async def test_a_restart_that_cannot_reload_gives_up_that_session_alone(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """A session whose trace went bad cannot restart: it stops, the supervisor goes on."""
    server.default = lambda request: Reply.text("ok")
    fail = trio.Event()
    failed_once: list[bool] = []

    async def sibling(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        if not failed_once:
            await fail.wait()
            failed_once.append(True)
            raise RuntimeError("sibling broke")
        await trio.sleep_forever()

    async with open_supervisor(store=store, strategy="one_for_all") as sup:
        broken = await sup.start_session(make_agent())
        healthy = await sup.start_session(make_agent())
        await broken.run("one")
        await healthy.run("one")
        monitor = broken.ref.monitor()
        _trace(store, broken.id).write_bytes(b"not a trace\n")
        await sup.start_child(ChildSpec(id="sibling", start=sibling, restart="transient"))
        fail.set()
        reason = await monitor.wait()
        assert reason.startswith("failed: cannot restart") and "corrupt" in reason
        assert (await healthy.run("two")).status == "completed"
        assert broken.id not in sup.sessions


async def test_descriptors_stay_flat_over_many_stopped_sessions(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """Stopping a session releases its trace file, whatever the Store's load."""
    server.default = lambda request: Reply.text("ok")
    agent = make_agent()

    def open_files() -> int:
        """Trace files this process holds open (model connections come and go)."""
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").endswith("trace.jsonl")
            except OSError:
                continue
        return count

    async with open_supervisor(store=store) as sup:
        warm = await sup.start_session(agent)
        await warm.run("warm up")
        await sup.stop_session(warm)

        async def one(i: int) -> None:
            session = await sup.start_session(agent)
            await session.run(f"run {i}")
            await sup.stop_session(session)

        for batch in range(6):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(one, batch * 50 + i)
        await trio.testing.wait_all_tasks_blocked()
        assert sup.services.store is not None
        await sup.services.store.read_meta(warm.id)  # the releases went through first
        assert open_files() == 0


_CHILD = textwrap.dedent(
    """
    import sys, trio
    from rho_actors import Agent, AgentConfig, SessionStore, open_supervisor

    async def main():
        agent = Agent(AgentConfig(base_url=sys.argv[2], model="m", profile="developer"))
        async with open_supervisor(store=SessionStore(sys.argv[1])) as sup:
            session = await sup.start_session(agent)
            print(session.id, flush=True)
            await session.run(prompt="the first run, killed")

    trio.run(main)
    """
)


async def test_kill_9_during_the_first_run_lists_it_interrupted(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """A process killed during a session's very first run leaves it listed interrupted,
    complete on disk, and recoverable."""
    server.add(Reply.text("never finished", first_byte_delay=10_000))
    child = await trio.lowlevel.open_process(
        [sys.executable, "-c", _CHILD, str(store.path), server.base_url],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        session_id = (await child.stdout.receive_some(100)).decode().strip()
        await server.wait_for_requests(1)
        child.send_signal(signal.SIGKILL)
        await child.wait()
    finally:
        child.kill()
    [info] = store.list()
    assert info.id == session_id and info.status == "interrupted"
    assert info.first_prompt == "the first run, killed"
    server.add(Reply.text("finished after recovery"))
    async with open_supervisor(store=store) as sup:
        [session] = await sup.recover(agent_factory=lambda sid: make_agent())
        result = await session.resume()
        assert result.status == "completed" and result.text == "finished after recovery"
    assert isinstance(State.replay(DirectoryBackend(store.path).load(session_id)), State)
