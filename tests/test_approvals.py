"""Approvals as messages: callbacks, interrupts, pause and resume, timeouts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from rho_actors import (
    Agent,
    AgentEvent,
    ApprovalInterrupt,
    RunResult,
    Session,
    SessionStore,
    function_tool,
    open_supervisor,
)
from rho_actors.testing import Reply, ScriptedServer


def _agent_with_guarded_tool(
    make_agent: Callable[..., Agent], **fields: Any
) -> tuple[Agent, list[str]]:
    calls: list[str] = []

    async def launch(target: str) -> str:
        """Launch something irreversible."""
        calls.append(target)
        return f"launched {target}"

    agent = make_agent(**fields)
    agent.registry.register(function_tool(launch, requires_approval=True))
    return agent, calls


def _tool_results(server: ScriptedServer, index: int) -> list[str]:
    return [m["content"] for m in server.chat_requests[index].messages if m["role"] == "tool"]


async def test_callback_approves(server: ScriptedServer, make_agent: Callable[..., Agent]) -> None:
    """A callback answering True lets the call run; the request event carries id, tool, args."""
    agent, calls = _agent_with_guarded_tool(make_agent)
    server.add(Reply.tool_call("launch", {"target": "rocket"}, id="call_1"), Reply.text("done"))
    session = Session(agent)
    asked: list[tuple[str, dict[str, Any]]] = []

    def approve(tool: str, args: dict[str, Any]) -> bool:
        asked.append((tool, args))
        return True

    session.approval_callback = approve
    result = await session.run(prompt="go")
    assert result.status == "completed"
    assert calls == ["rocket"]
    assert asked == [("launch", {"target": "rocket"})]
    request = next(e for e in result.events if e.type == "approval_request")
    assert (request.tool_call_id, request.tool_name, request.tool_args) == (
        "call_1",
        "launch",
        {"target": "rocket"},
    )


async def test_async_callback_denies(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A denial reaches the model as a tool result and emits tool_blocked."""
    agent, calls = _agent_with_guarded_tool(make_agent)
    server.add(Reply.tool_call("launch", {"target": "moon"}), Reply.text("ok, not launching"))
    session = Session(agent)

    async def deny(tool: str, args: dict[str, Any]) -> bool:
        await trio.lowlevel.checkpoint()
        return False

    session.approval_callback = deny
    result = await session.run(prompt="go")
    assert calls == []
    assert any(e.type == "tool_blocked" and e.tool_name == "launch" for e in result.events)
    assert "denied" in _tool_results(server, 1)[0]
    assert result.status == "completed"


async def test_broken_callback_fails_closed(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A callback that raises denies the call; the run goes on."""
    agent, calls = _agent_with_guarded_tool(make_agent)
    server.add(Reply.tool_call("launch", {"target": "x"}), Reply.text("fine"))
    session = Session(agent)

    def broken(tool: str, args: dict[str, Any]) -> bool:
        raise KeyError("oops")

    session.approval_callback = broken
    result = await session.run(prompt="go")
    assert calls == [] and result.status == "completed"
    assert "approval callback raised KeyError" in _tool_results(server, 1)[0]


async def test_interrupt_pauses_then_approve_resumes(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """ApprovalInterrupt pauses the run; approve() + resume() carries it to completion."""
    agent, calls = _agent_with_guarded_tool(make_agent)
    server.add(Reply.tool_call("launch", {"target": "probe"}, id="c9"), Reply.text("probe away"))
    session = Session(agent)

    def interrupt(tool: str, args: dict[str, Any]) -> bool:
        raise ApprovalInterrupt()

    session.approval_callback = interrupt
    paused = await session.run(prompt="go")
    assert paused.status == "paused"
    assert [p.tool_call_id for p in paused.pending_approvals] == ["c9"]
    assert any(e.type == "interruption" for e in paused.events)
    assert calls == []
    await session.approve("c9")
    resumed = await session.resume()
    assert resumed.status == "completed" and resumed.text == "probe away"
    assert calls == ["probe"]
    assert _tool_results(server, 1) == ["launched probe"]


async def test_pause_then_approve_after_reloading_from_the_store(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """Without a callback or auto-approve the run pauses; a fresh process can approve it."""
    agent, calls = _agent_with_guarded_tool(make_agent, auto_approve=False)
    server.add(Reply.tool_call("launch", {"target": "sat"}, id="p1"))
    store = SessionStore(tmp_path / "s")
    session = store.create_session(agent)
    paused = await session.run(prompt="launch the satellite")
    assert paused.status == "paused"
    assert store.list()[0].status == "paused"

    # "Another process": a new store object and a new agent, state from disk only.
    agent2, calls2 = _agent_with_guarded_tool(make_agent, auto_approve=False)
    reloaded = SessionStore(tmp_path / "s").resume(session.id, agent2)
    assert [p.tool_call_id for p in reloaded.state.pending_approvals] == ["p1"]
    await reloaded.approve("p1")
    server.add(Reply.text("satellite launched"))
    result = await reloaded.resume()
    assert result.status == "completed" and calls2 == ["sat"] and calls == []
    final = SessionStore(tmp_path / "s").resume(session.id, agent2)
    assert final.state.pending_approvals == []
    assert final.state.messages == reloaded.state.messages


async def test_pause_then_deny(server: ScriptedServer, make_agent: Callable[..., Agent]) -> None:
    """deny() on a paused call tells the model, with the reason, and runs nothing."""
    agent, calls = _agent_with_guarded_tool(make_agent, auto_approve=False)
    server.add(Reply.tool_call("launch", {"target": "t"}, id="d1"), Reply.text("understood"))
    session = Session(agent)
    assert (await session.run(prompt="go")).status == "paused"
    await session.deny("d1", "not today")
    result = await session.resume()
    assert calls == [] and result.status == "completed"
    assert "not today" in _tool_results(server, 1)[0]
    assert any(e.type == "tool_blocked" for e in result.events)


async def test_new_prompt_instead_of_resume_denies_pending(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A new prompt on a paused session fails the pending calls closed and stays valid."""
    agent, calls = _agent_with_guarded_tool(make_agent, auto_approve=False)
    server.add(Reply.tool_call("launch", {"target": "t"}), Reply.text("moving on"))
    session = Session(agent)
    await session.run(prompt="go")
    result = await session.run(prompt="never mind")
    assert result.status == "completed" and calls == []
    assert [m["role"] for m in server.chat_requests[1].messages] == [
        "user",
        "assistant",
        "tool",
        "user",
    ]


async def test_decision_that_never_comes_times_out_denied(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """A callback that never answers is a denial after approval_timeout."""
    agent, calls = _agent_with_guarded_tool(make_agent)
    server.add(Reply.tool_call("launch", {"target": "t"}), Reply.text("timed out"))
    session = Session(agent)
    session.approval_timeout = 60

    async def never(tool: str, args: dict[str, Any]) -> bool:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    session.approval_callback = never
    result = await session.run(prompt="go")
    assert calls == []
    assert "no approval decision within 60 s" in _tool_results(server, 1)[0]
    assert result.status == "completed"


async def test_approve_message_answers_a_waiting_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """While a run waits on a slow callback, an ApprovalDecision from elsewhere decides it."""
    agent, calls = _agent_with_guarded_tool(make_agent)
    server.add(Reply.tool_call("launch", {"target": "r"}, id="w1"), Reply.text("launched"))

    async def slow(tool: str, args: dict[str, Any]) -> bool:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with open_supervisor() as sup:
        session = await sup.start_session(agent)
        session.approval_callback = slow
        results: list[RunResult] = []

        async def on_event(event: AgentEvent) -> None:
            if event.type == "approval_request":
                nursery.start_soon(session.approve, "w1")

        async with trio.open_nursery() as nursery:
            results.append(await session.run(prompt="go", on_event=on_event))
    assert results[0].status == "completed" and calls == ["r"]


async def test_cancel_while_waiting_for_approval(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A cancel reaches a run blocked on an approval; other sessions are unaffected."""
    agent, calls = _agent_with_guarded_tool(make_agent)
    server.add(Reply.tool_call("launch", {"target": "c"}))
    waiting = trio.Event()

    async def slow(tool: str, args: dict[str, Any]) -> bool:
        waiting.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with open_supervisor() as sup:
        blocked = await sup.start_session(agent)
        blocked.approval_callback = slow
        other = await sup.start_session(make_agent())
        results: dict[str, RunResult] = {}

        async def run(name: str, session: Session) -> None:
            results[name] = await session.run(prompt=name)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "blocked", blocked)
            await waiting.wait()
            server.add(Reply.text("other is fine"))
            await run("other", other)
            await blocked.cancel("user gave up")
    assert results["other"].text == "other is fine"
    assert results["blocked"].status == "cancelled"
    assert results["blocked"].cancel_reason == "user gave up"
    assert calls == []
    answered = {m.get("tool_call_id") for m in blocked.state.messages if m["role"] == "tool"}
    assert len(answered) == 1
