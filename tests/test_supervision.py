"""Supervision: restart types, strategies, intensity, nesting, crashes, hibernation, faults."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from rho_actors import (
    ActorCrashed,
    Agent,
    ChildSpec,
    MailboxClosed,
    RunResult,
    SessionStore,
    StoreError,
    SupervisionError,
    Supervisor,
    open_supervisor,
)
from rho_actors._store._backend import DirectoryBackend
from rho_actors.testing import Reply, ScriptedServer, crash_next_run


class Worker:
    """A scriptable child: counts starts, fails on demand, stops on request."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log
        self.fail = trio.Event()
        self.finish = trio.Event()

    async def start(self, *, task_status: trio.TaskStatus[Worker]) -> None:
        self.log.append(f"start {self.name}")
        self.fail = trio.Event()
        self.finish = trio.Event()
        task_status.started(self)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._wait_fail)
            await self.finish.wait()
            nursery.cancel_scope.cancel(reason="finished")

    async def _wait_fail(self) -> None:
        await self.fail.wait()
        raise RuntimeError(f"{self.name} crashed")

    def spec(self, restart: Any = "permanent") -> ChildSpec:
        return ChildSpec(id=self.name, start=self.start, restart=restart, stop=self.finish.set)


async def _settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_one_for_one_restarts_only_the_failed_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """one_for_one: a failure restarts that child alone."""
    log: list[str] = []
    a, b = Worker("a", log), Worker("b", log)
    async with open_supervisor() as sup:
        await sup.start_child(a.spec())
        await sup.start_child(b.spec())
        a.fail.set()
        await _settle()
        assert log == ["start a", "start b", "start a"]
        assert sup.restart_count == 1 and isinstance(sup.last_failure, RuntimeError)


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        ("one_for_all", ["start a", "start b", "start c", "start a", "start b", "start c"]),
        ("rest_for_one", ["start a", "start b", "start c", "start b", "start c"]),
    ],
)
async def test_strategies(
    strategy: Any, expected: list[str], autojump_clock: trio.testing.MockClock
) -> None:
    """one_for_all restarts everyone; rest_for_one restarts the failed child and later ones."""
    log: list[str] = []
    workers = [Worker(n, log) for n in "abc"]
    async with open_supervisor(strategy=strategy) as sup:
        for w in workers:
            await sup.start_child(w.spec())
        workers[1].fail.set()
        await _settle()
        assert sorted(log[3:]) == sorted(expected[3:])
        assert log[:3] == expected[:3]


async def test_restart_types(autojump_clock: trio.testing.MockClock) -> None:
    """permanent restarts after a normal exit; transient only after a failure; temporary never."""
    log: list[str] = []
    perm, trans, temp = Worker("perm", log), Worker("trans", log), Worker("temp", log)
    async with open_supervisor(max_restarts=10) as sup:
        await sup.start_child(perm.spec("permanent"))
        await sup.start_child(trans.spec("transient"))
        await sup.start_child(temp.spec("temporary"))
        perm.finish.set()
        trans.finish.set()
        await _settle()
        assert log.count("start perm") == 2 and log.count("start trans") == 1
        assert sup.children == ["perm", "temp"]
        temp.fail.set()
        await _settle()
        assert log.count("start temp") == 1 and "temp" not in sup.children


async def test_intensity_exceeded_escalates(autojump_clock: trio.testing.MockClock) -> None:
    """More than max_restarts within the period raises SupervisionError with the last failure."""
    log: list[str] = []
    w = Worker("flaky", log)
    with pytest.raises(SupervisionError) as info:
        async with open_supervisor(max_restarts=2, period=5) as sup:
            await sup.start_child(w.spec())
            for _ in range(3):
                w.fail.set()
                await _settle()
    assert isinstance(info.value.last_failure, RuntimeError)
    assert "flaky crashed" in str(info.value.last_failure)
    assert log.count("start flaky") == 3


async def test_restarts_spread_over_time_are_fine(autojump_clock: trio.testing.MockClock) -> None:
    """Failures further apart than the period never add up to an escalation."""
    log: list[str] = []
    w = Worker("slowfail", log)
    async with open_supervisor(max_restarts=1, period=5) as sup:
        await sup.start_child(w.spec())
        for _ in range(4):
            w.fail.set()
            await _settle()
            await trio.sleep(6)
    assert log.count("start slowfail") == 5


async def test_nested_supervisor_escalates_as_a_child_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A child supervisor that gives up is restarted by its parent like any failed child."""
    log: list[str] = []
    async with open_supervisor(max_restarts=5) as top:
        inner = await top.start_supervisor("inner", max_restarts=0)
        assert isinstance(inner, Supervisor) and top.children == ["inner"]
        w = Worker("leaf", log)
        await inner.start_child(w.spec())
        w.fail.set()
        await _settle()
        assert top.restart_count == 1
        assert isinstance(top.last_failure, SupervisionError)


async def test_child_that_cannot_start_fails_its_starter() -> None:
    """An exception before task_status.started reaches the caller of start_child."""

    async def broken(*, task_status: trio.TaskStatus[None]) -> None:
        raise ValueError("bad config")

    async with open_supervisor() as sup:
        with pytest.raises(ValueError, match="bad config"):
            await sup.start_child(ChildSpec(id="broken", start=broken))
        assert sup.children == []


# --- sessions ---------------------------------------------------------------


async def test_crash_mid_run_restarts_with_mailbox_intact(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    store: SessionStore,
) -> None:
    """A crash in the actor fails its caller and restarts the session; queued prompts survive."""
    queued = trio.Event()
    server.default = lambda request: Reply.text(f"answer to {request.messages[-1]['content']}")
    agent = make_agent()
    outcomes: dict[str, Any] = {}
    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(agent)
        other = await sup.start_session(agent)
        await session.run(prompt="before")

        async def run(prompt: str) -> None:
            try:
                outcomes[prompt] = await session.run(prompt=prompt)
            except ActorCrashed as exc:
                outcomes[prompt] = exc

        crash_next_run(session, RuntimeError("bug in the actor"), after=queued)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "crashes")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(run, "queued")
            await trio.testing.wait_all_tasks_blocked()
            queued.set()
            assert (await other.run(prompt="unaffected")).text == "answer to unaffected"
        assert sup.restart_count == 1
    assert isinstance(outcomes["crashes"], ActorCrashed)
    assert "bug in the actor" in str(outcomes["crashes"])
    assert outcomes["queued"].text == "answer to queued"
    users = [m["content"] for m in session.state.messages if m["role"] == "user"]
    # The crashed run's prompt never reached the store; the queued one ran after the restart.
    assert users == ["before", "queued"]


async def test_hibernate_and_wake_preserve_state(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    store: SessionStore,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An idle session hibernates (no task, no state in memory) and wakes on its next message."""
    server.default = lambda request: Reply.text(f"n={len(request.messages)}")
    async with open_supervisor(store=store, hibernate_after=60) as sup:
        session = await sup.start_session(make_agent())
        await session.run(prompt="one")
        before = list(session.state.messages)
        # The idle sweep hibernates between hibernate_after and 17/16 of it.
        await trio.sleep(60 * 17 / 16 + 1)
        assert session.hibernating
        assert session._state is None and session._mailbox is None
        assert session.id in sup.sessions and sup.children == []
        result = await session.run(prompt="two")
        assert result.text == "n=3" and not session.hibernating
        assert session.state.messages[:2] == before
        assert session.state.run_count == 2


async def test_idle_sweep_hibernates_on_time_and_spares_busy_sessions(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    store: SessionStore,
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """hibernate_after counts from when the actor went idle; a watched session stays awake."""
    server.default = lambda request: Reply.text("ok")
    async with open_supervisor(store=store, hibernate_after=6) as sup:
        quiet = await sup.start_session(make_agent())
        watched = await sup.start_session(make_agent())
        await quiet.run(prompt="one")
        await watched.run(prompt="one")
        async with watched.events():
            await trio.sleep(5.9)
            assert not quiet.hibernating
            await quiet.run(prompt="two")  # activity restarts the idle clock
            await trio.sleep(5.9)
            assert not quiet.hibernating
            await trio.sleep(0.6)  # the sweep may be up to 6/16 s late
            assert quiet.hibernating
            assert not watched.hibernating  # an open event stream keeps it awake
        await trio.sleep(12)
        assert watched.hibernating


async def test_hibernate_idle_now_and_the_trace_file_is_released(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    tmp_path: Path,
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """Supervisor.hibernate_idle() hibernates every idle session at once and closes its file."""
    server.default = lambda request: Reply.text("ok")
    backend = DirectoryBackend(tmp_path)
    store = SessionStore(backend=backend)
    async with open_supervisor(store=store) as sup:
        sessions = [await sup.start_session(make_agent()) for _ in range(3)]
        for session in sessions:
            await session.run(prompt="hi")
        assert {s.id for s in sessions} <= set(backend._handles)
        assert sup.hibernate_idle() == 3
        await trio.testing.wait_all_tasks_blocked()
        assert all(s.hibernating for s in sessions)
        # The release reached the Store before this (its mailbox is in order).
        store_ref = sup.services.store
        assert store_ref is not None
        await store_ref.read_meta(sessions[0].id)
        assert not set(backend._handles) & {s.id for s in sessions}
        assert sup.hibernate_idle() == 0  # nothing awake left to ask
        result = await sessions[1].run(prompt="again")
        assert result.status == "completed" and not sessions[1].hibernating
        assert [m["content"] for m in sessions[1].state.messages if m["role"] == "user"] == [
            "hi",
            "again",
        ]


async def test_store_fault_fails_the_run_not_the_supervisor(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """A failing backend (disk full) fails that session's run clearly; others go on."""

    class FlakyBackend(DirectoryBackend):
        broken: set[str] = set()

        def append(self, batch: Any) -> dict[str, StoreError]:
            failures = {
                sid: StoreError(
                    "cannot append to trace (disk full)",
                    path=str(self.root / sid / "trace.jsonl"),
                    session_id=sid,
                )
                for sid in batch
                if sid in self.broken
            }
            ok = {sid: lines for sid, lines in batch.items() if sid not in self.broken}
            failures.update(super().append(ok))
            return failures

    backend = FlakyBackend(tmp_path / "s")
    store = SessionStore(backend=backend)
    server.default = lambda request: Reply.text("fine")
    agent = make_agent()
    async with open_supervisor(store=store) as sup:
        good = await sup.start_session(agent)
        bad = await sup.start_session(agent)
        await good.run(prompt="first")
        await bad.run(prompt="first")
        written = (tmp_path / "s" / bad.id / "trace.jsonl").read_bytes()
        FlakyBackend.broken.add(bad.id)
        failed = await bad.run(prompt="second")
        assert failed.status == "error"
        assert failed.error is not None and "disk full" in failed.error
        assert bad.id in failed.error and "trace.jsonl" in failed.error
        assert (await good.run(prompt="second")).status == "completed"
        assert (tmp_path / "s" / bad.id / "trace.jsonl").read_bytes() == written
    assert store.load_state(bad.id).run_count == 1


async def test_corrupt_line_in_the_middle_names_session_and_file(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """Loading a trace damaged in the middle raises a StoreError naming the file and line."""
    server.default = lambda request: Reply.text("ok")
    session = store.create_session(make_agent())
    await session.run(prompt="a")
    await session.run(prompt="b")
    trace = store.path / session.id / "trace.jsonl"
    lines = trace.read_bytes().split(b"\n")
    lines[2] = b"{corrupt"
    trace.write_bytes(b"\n".join(lines))
    with pytest.raises(StoreError) as info:
        store.resume(session.id, make_agent())
    assert "corrupt trace line 3" in str(info.value) and str(trace) in str(info.value)
    assert session.id in str(info.value)


async def test_cancel_request_from_another_process(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """store.request_cancel (as `rho-actors monitor --cancel` does) cancels a hosted run."""
    server.add(Reply.text("z" * 400, chunk_size=1, chunk_delay=0.01))
    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(make_agent())
        results: list[RunResult] = []

        async def run() -> None:
            results.append(await session.run(prompt="long"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await server.wait_until(lambda: server.open_streams == 1)
            info = next(i for i in store.list() if i.id == session.id)
            assert info.status == "running"
            await trio.to_thread.run_sync(store.request_cancel, session.id, "from the monitor")
    assert results[0].status == "cancelled" and results[0].cancel_reason == "from the monitor"


async def test_session_ref_send_ask_and_monitor(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A session's ref casts and calls messages; its monitor fires when the actor stops."""
    from rho_actors import Cancel, Prompt, Stop

    server.default = lambda request: Reply.text("via ask")
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent())
        ref = session.ref
        monitor = ref.monitor()
        with trio.fail_after(5):
            result: RunResult = await ref.ask(lambda reply: Prompt(prompt="hi", reply=reply))
        assert result.text == "via ask"
        await ref.send(Cancel(reason="nothing to cancel: not sticky"))
        await ref.send(Stop())
        with trio.fail_after(5):
            assert await monitor.wait() == "stopped"
        assert session.id not in sup.sessions
        with pytest.raises(MailboxClosed, match="no running actor"):
            await ref.send(Cancel())


async def test_monitor_reports_a_temporary_sessions_failure(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
) -> None:
    """A temporary session that crashes is not restarted; its monitor says why."""
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent(), restart="temporary")
        crash_next_run(session, RuntimeError("boom"))
        monitor = session.ref.monitor()
        with pytest.raises(ActorCrashed):
            await session.run(prompt="go")
        with trio.fail_after(5):
            assert await monitor.wait() == "failed: RuntimeError: boom"
        assert sup.restart_count == 0
