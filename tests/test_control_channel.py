"""Actors talk by messages: control messages on one channel, capabilities instead of objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from rho_actors import (
    Agent,
    CancellationToken,
    Prompt,
    RunResult,
    Session,
    ToolContext,
    function_tool,
    open_supervisor,
)
from rho_actors._delegation import Delegation
from rho_actors.testing import Fault, Reply, ScriptedServer

MAILBOX_CAPACITY = 64


def _stalled() -> Reply:
    return Reply.text("working on it " * 4, fault=Fault.stall(after_chunks=1))


async def test_a_cancel_gets_through_a_full_mailbox(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """cancel_nowait and a token reach the run even with the mailbox full of prompts."""
    server.add(_stalled())
    results: list[RunResult] = []
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent(), shutdown=None)
        token = CancellationToken()

        async def first() -> None:
            results.append(await session.run("first", token=token))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await server.wait_for_requests(1)
            for i in range(MAILBOX_CAPACITY * 2):  # the control loop takes them into its backlog
                await session.ref.send(Prompt(prompt=f"queued {i}", reply=None))
            await trio.testing.wait_all_tasks_blocked()
            token.cancel("stop the first run")  # synchronous, from this task
        assert results[0].status == "cancelled"
        assert results[0].cancel_reason == "stop the first run"
        await sup.stop_session(session)  # the queued prompts are never run

        server.add(_stalled())
        other = await sup.start_session(make_agent())

        async def second() -> None:
            results.append(await other.run("second"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(second)
            await server.wait_for_requests(2)
            other.cancel_nowait("cleanup code cannot await")
        assert results[1].status == "cancelled"
        assert results[1].cancel_reason == "cleanup code cannot await"


async def test_tools_get_a_delegation_capability_never_the_session(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """The Registry runs a tool with a narrow capability; no Session is reachable from it."""
    seen: list[ToolContext] = []

    async def inspect_context(ctx: ToolContext) -> str:
        """Look at what the tool was given."""
        seen.append(ctx)
        return "looked"

    agent = make_agent()
    agent.registry.register(function_tool(inspect_context))
    server.add(Reply.tool_call("inspect_context", {}), Reply.text("done"))
    session = Session(agent)
    assert (await session.run("inspect")).status == "completed"
    [ctx] = seen
    assert isinstance(ctx.delegation, Delegation)
    assert ctx.delegation.depth == 0
    reachable: list[Any] = [*ctx.extras.values(), *vars_of(ctx.delegation)]
    assert not any(isinstance(value, Session) for value in reachable)


def vars_of(obj: object) -> list[Any]:
    return [getattr(obj, name) for name in getattr(type(obj), "__slots__", ())]
