"""The Registry actor: limits, timeouts, parallelism and abandoned callers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.testing

from rho_actors import Agent, Session, ToolContext, ToolOutput, function_tool
from rho_actors._registry import coerce_arguments, serve_registry
from rho_actors.testing import Reply, ScriptedServer, ToolCallSpec


async def test_tool_timeout_stops_the_call(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """A tool past its timeout is stopped and the model is told so."""
    agent = make_agent()
    stopped: list[bool] = []

    async def hang() -> str:
        """Hang."""
        try:
            await trio.sleep(3600)
        finally:
            stopped.append(True)
        return "never"

    agent.registry.register(function_tool(hang, timeout=5))
    server.add(Reply.tool_call("hang", {}), Reply.text("gave up"))
    result = await Session(agent).run(prompt="go")
    end = next(e for e in result.events if e.type == "tool_end")
    assert end.tool_result == "tool 'hang' timed out after 5 s and was stopped"
    assert end.tool_metadata is not None and end.tool_metadata["timed_out"]
    assert stopped == [True]


async def test_readonly_calls_of_one_turn_run_in_parallel(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Read-only calls overlap; a writing call waits for them and runs alone."""
    agent = make_agent(profile="unrestricted")
    log: list[str] = []

    async def look(name: str) -> str:
        """Look."""
        log.append(f"start {name}")
        await trio.sleep(0.05)
        log.append(f"end {name}")
        return name

    async def change(name: str) -> str:
        """Change."""
        log.append(f"start {name}")
        log.append(f"end {name}")
        return name

    agent.registry.register(function_tool(look, readonly=True))
    agent.registry.register(change)
    server.add(
        Reply.tool_calls(
            [
                ToolCallSpec(name="look", arguments={"name": "a"}),
                ToolCallSpec(name="look", arguments={"name": "b"}),
                ToolCallSpec(name="change", arguments={"name": "c"}),
            ]
        ),
        Reply.text("ok"),
    )
    await Session(agent).run(prompt="go")
    assert sorted(log[:2]) == ["start a", "start b"]
    assert log[-2:] == ["start c", "end c"]
    results = [m["content"] for m in server.chat_requests[1].messages if m["role"] == "tool"]
    assert results == ["a", "b", "c"]


async def test_global_subprocess_limit(tmp_path: Path) -> None:
    """No more than max_subprocesses subprocess tools run at once, across callers."""
    running = 0
    peak = 0

    class Spawner:
        name = "spawn"
        description = "d"
        parameters: dict[str, Any] = {"type": "object", "properties": {}}
        requires_approval = False
        readonly = True
        uses_subprocess = True

        async def handle(self, args: Any, ctx: ToolContext) -> ToolOutput:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await trio.sleep(0.01)
            running -= 1
            return ToolOutput(content="ok")

    tool = Spawner()
    async with trio.open_nursery() as nursery:
        registry = await nursery.start(
            lambda task_status: serve_registry(max_subprocesses=3, task_status=task_status)
        )
        ctx = ToolContext(session_id="s", call_id="c", working_dir=tmp_path)
        async with trio.open_nursery() as callers:
            for _ in range(12):
                callers.start_soon(registry.invoke, tool, "spawn", "{}", ctx)
        registry.close()
    assert peak == 3


async def test_abandoned_caller_cancels_the_work(tmp_path: Path) -> None:
    """When the caller is cancelled, the Registry cancels the tool instead of finishing it."""
    cancelled = trio.Event()

    async def slow() -> str:
        """Slow."""
        try:
            await trio.sleep(3600)
        except trio.Cancelled:
            cancelled.set()
            raise
        return "done"

    tool = function_tool(slow)
    async with trio.open_nursery() as nursery:
        registry = await nursery.start(serve_registry)
        ctx = ToolContext(session_id="s", call_id="c", working_dir=tmp_path)
        with trio.move_on_after(0.05):
            await registry.invoke(tool, "slow", "{}", ctx)
        with trio.fail_after(2):
            await cancelled.wait()
        registry.close()


def test_coercion_of_string_arguments() -> None:
    """Strings become the booleans and numbers the schema asks for; junk is left alone."""
    schema = {
        "type": "object",
        "properties": {
            "flag": {"type": "boolean"},
            "count": {"type": "integer"},
            "ratio": {"type": "number"},
            "name": {"type": "string"},
        },
    }
    assert coerce_arguments(
        {"flag": "True", "count": " 7 ", "ratio": "0.5", "name": "3"}, schema
    ) == {"flag": True, "count": 7, "ratio": 0.5, "name": "3"}
    assert coerce_arguments({"count": "seven"}, schema) == {"count": "seven"}


async def test_disabled_tool_is_reported(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A tool the profile disables is answered as disabled, not executed."""
    server.add(Reply.tool_call("write", {"path": "x", "content": "y"}), Reply.text("ok"))
    result = await Session(make_agent(profile="readonly")).run(prompt="go")
    end = next(e for e in result.events if e.type == "tool_end")
    assert end.tool_result == "tool 'write' is disabled by profile 'readonly'"
