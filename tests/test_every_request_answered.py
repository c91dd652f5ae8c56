"""Every request is answered: whatever stops a session actor, its callers get a reply.

Each test stops an actor while one caller is mid-run (the model stream is
stalled, so only the stop can end it) and another caller's prompt waits in
the mailbox. The in-flight caller must get ``status="cancelled"`` with a
reason; the queued one a cancelled result saying the run never started (or
is served after a restart). Callers live outside the supervisor's nursery,
as in a web service, unless the test says otherwise.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from rho_actors import (
    ActorStopped,
    Agent,
    ChildSpec,
    MailboxClosed,
    Prompt,
    RunResult,
    Session,
    SessionStore,
    SupervisionError,
    open_supervisor,
)
from rho_actors.testing import Fault, Reply, ScriptedServer

Outcome = RunResult | BaseException


def _stalled() -> Reply:
    """A reply that streams one chunk and then never another byte."""
    return Reply.text("thinking about it " * 4, fault=Fault.stall(after_chunks=1))


async def _call(
    make: Callable[[], Awaitable[RunResult]], outcomes: dict[str, Outcome], key: str
) -> None:
    try:
        outcomes[key] = await make()
    except Exception as exc:
        outcomes[key] = exc


async def _queued(session: Session) -> None:
    """Until the second caller waits behind the first (the model stream is stalled,
    so every task, the server included, is blocked once the prompt is queued)."""
    await trio.testing.wait_all_tasks_blocked()


def _cancelled(outcome: Outcome | None) -> RunResult:
    assert isinstance(outcome, RunResult), outcome
    assert outcome.status == "cancelled", outcome
    assert outcome.cancel_reason, outcome
    return outcome


async def test_stop_session_answers_the_in_flight_and_the_queued_caller(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """stop_session mid-run: the running caller is cancelled, the queued one told why."""
    server.add(_stalled())
    outcomes: dict[str, Outcome] = {}
    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(make_agent(), shutdown=None)
        async with trio.open_nursery() as callers:
            callers.start_soon(_call, lambda: session.run("first"), outcomes, "first")
            await server.wait_for_requests(1)
            callers.start_soon(_call, lambda: session.run("second"), outcomes, "second")
            await _queued(session)
            await sup.stop_session(session)
    first = _cancelled(outcomes["first"])
    assert "shutting down" in (first.cancel_reason or "")
    second = _cancelled(outcomes["second"])
    assert "before this run started" in (second.cancel_reason or "")
    assert len(server.chat_requests) == 1
    with pytest.raises(MailboxClosed):
        await session.ref.ask(lambda reply: Prompt(prompt="late", reply=reply))


async def test_graceful_stop_cancels_after_the_grace_period(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    store: SessionStore,
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """A graceful stop waits its grace, then cancels the run and still answers."""
    server.add(_stalled())
    outcomes: dict[str, Outcome] = {}
    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(make_agent(), shutdown=2.0)
        async with trio.open_nursery() as callers:
            callers.start_soon(_call, lambda: session.run("first"), outcomes, "first")
            await server.wait_for_requests(1)
            started = trio.current_time()
            await sup.stop_session(session)
            assert trio.current_time() - started == pytest.approx(2.0, abs=0.2)
    _cancelled(outcomes["first"])


async def test_supervisor_exit_answers_callers_outside_its_nursery(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """The supervisor's block ends while its callers are tasks elsewhere (a web app)."""
    server.add(_stalled())
    outcomes: dict[str, Outcome] = {}
    ready: list[Session] = []
    close = trio.Event()
    have_session = trio.Event()

    async def host() -> None:
        async with open_supervisor(store=store) as sup:
            ready.append(await sup.start_session(make_agent(), shutdown=None))
            have_session.set()
            await close.wait()

    async with trio.open_nursery() as app:
        app.start_soon(host)
        await have_session.wait()
        session = ready[0]
        app.start_soon(_call, lambda: session.run("first"), outcomes, "first")
        await server.wait_for_requests(1)
        app.start_soon(_call, lambda: session.run("second"), outcomes, "second")
        await _queued(session)
        close.set()
    _cancelled(outcomes["first"])
    second = _cancelled(outcomes["second"])
    assert "before this run started" in (second.cancel_reason or "")


async def test_one_for_all_restart_answers_the_caller_and_the_session_goes_on(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """A sibling's failure restarts the session: the run in flight ends cancelled, the
    queued prompt is served by the restarted actor."""
    server.add(_stalled(), Reply.text("after the restart"))
    outcomes: dict[str, Outcome] = {}
    fail = trio.Event()

    failures: list[str] = []

    async def sibling(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        if not failures:
            await fail.wait()
            failures.append("sibling broke")
            raise RuntimeError("sibling broke")
        await trio.sleep_forever()

    async with open_supervisor(store=store, strategy="one_for_all") as sup:
        session = await sup.start_session(make_agent())
        await sup.start_child(ChildSpec(id="sibling", start=sibling, restart="transient"))
        async with trio.open_nursery() as callers:
            callers.start_soon(_call, lambda: session.run("first"), outcomes, "first")
            await server.wait_for_requests(1)
            callers.start_soon(_call, lambda: session.run("second"), outcomes, "second")
            await _queued(session)
            fail.set()
    first = _cancelled(outcomes["first"])
    assert "one_for_all" in (first.cancel_reason or "")
    second = outcomes["second"]
    assert isinstance(second, RunResult) and second.status == "completed"
    assert second.text == "after the restart"


async def test_supervisor_giving_up_answers_every_caller(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """Restart intensity exceeded: the supervisor raises, and its callers still get answers."""
    server.add(_stalled())
    outcomes: dict[str, Outcome] = {}
    fail = trio.Event()
    have_session = trio.Event()
    sessions: list[Session] = []

    async def flaky(*, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await fail.wait()
        raise RuntimeError("always broken")

    async def host() -> None:
        with pytest.raises(SupervisionError):
            async with open_supervisor(store=store, max_restarts=0) as sup:
                sessions.append(await sup.start_session(make_agent()))
                await sup.start_child(ChildSpec(id="flaky", start=flaky))
                have_session.set()
                await trio.sleep_forever()

    async with trio.open_nursery() as app:
        app.start_soon(host)
        await have_session.wait()
        session = sessions[0]
        app.start_soon(_call, lambda: session.run("first"), outcomes, "first")
        await server.wait_for_requests(1)
        app.start_soon(_call, lambda: session.run("second"), outcomes, "second")
        await _queued(session)
        fail.set()
    _cancelled(outcomes["first"])
    _cancelled(outcomes["second"])


async def test_cancelling_the_hosting_nursery_answers_callers_outside_it(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """The nursery that hosts the supervisor is cancelled from outside."""
    server.add(_stalled())
    outcomes: dict[str, Outcome] = {}
    sessions: list[Session] = []
    have_session = trio.Event()

    async with trio.open_nursery() as app:
        host_scope = trio.CancelScope()

        async def host() -> None:
            with host_scope:
                async with open_supervisor(store=store) as sup:
                    sessions.append(await sup.start_session(make_agent()))
                    have_session.set()
                    await trio.sleep_forever()

        app.start_soon(host)
        await have_session.wait()
        app.start_soon(_call, lambda: sessions[0].run("first"), outcomes, "first")
        await server.wait_for_requests(1)
        host_scope.cancel(reason="the application is reloading")
    first = _cancelled(outcomes["first"])
    assert "reloading" in (first.cancel_reason or "")


async def test_a_queued_compaction_fails_with_actor_stopped(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """A request other than a run, queued when the actor stops, fails with a clear error."""
    server.add(_stalled())
    outcomes: dict[str, Any] = {}

    async def compact(session: Session) -> None:
        try:
            outcomes["compact"] = await session.compact()
        except Exception as exc:
            outcomes["compact"] = exc

    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(make_agent(), shutdown=None)
        async with trio.open_nursery() as callers:
            callers.start_soon(_call, lambda: session.run("first"), outcomes, "first")
            await server.wait_for_requests(1)
            callers.start_soon(compact, session)
            await _queued(session)
            await sup.stop_session(session)
    error = outcomes["compact"]
    assert isinstance(error, ActorStopped)
    assert error.session_id == session.id and error.reason == "shut down"
