"""Session actors end to end, through the real openai client and the scripted server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from rho_actors import (
    Agent,
    AgentEvent,
    RunResult,
    Session,
    ToolContext,
    ToolOutput,
    open_supervisor,
)
from rho_actors.testing import Reply, ScriptedServer, ToolCallSpec, Usage


def _roles(session: Session) -> list[str]:
    return [m["role"] for m in session.state.messages]


def _assert_tool_calls_answered(session: Session) -> None:
    answered = {m["tool_call_id"] for m in session.state.messages if m["role"] == "tool"}
    for message in session.state.messages:
        for call in message.get("tool_calls") or ():
            assert call["id"] in answered, f"tool call {call['id']} has no result"


async def _add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


class EchoTool:
    """A hand-written handler object, as a user would write one."""

    name = "echo"
    description = "Echo the text back."
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    }
    requires_approval = False
    readonly = True

    async def handle(self, args: Any, ctx: ToolContext) -> ToolOutput:
        return ToolOutput(content=f"echo: {args['text']}", metadata={"session": ctx.session_id})


async def test_single_run_returns_the_models_text(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A plain prompt returns the streamed answer, with usage from the API."""
    server.add(Reply.text("Hello there.", usage=Usage(prompt_tokens=11, completion_tokens=3)))
    session = Session(make_agent(system_prompt="Be brief."))
    result = await session.run(prompt="hi")
    assert result.status == "completed"
    assert result.text == "Hello there."
    assert result.usage["input_tokens"] == 11
    assert result.usage["output_tokens"] == 3
    assert result.usage["api_calls"] == 1
    request = server.chat_requests[0]
    assert request.stream
    assert request.json["stream_options"] == {"include_usage": True}
    assert request.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert [e.type for e in result.events][-2:] == ["api_call_complete", "turn_complete"]
    assert "".join(e.content or "" for e in result.events if e.type == "text") == "Hello there."


async def test_multi_run_conversation_keeps_context(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Each run sees the whole conversation so far."""
    server.add(Reply.text("one"), Reply.text("two"), Reply.text("three"))
    session = Session(make_agent())
    texts = [(await session.run(prompt=p)).text for p in ("a", "b", "c")]
    assert texts == ["one", "two", "three"]
    assert [m["content"] for m in server.chat_requests[2].messages] == ["a", "one", "b", "two", "c"]
    assert session.state.run_count == 3
    assert session.state.usage["api_calls"] == 3


async def test_function_tool_and_handler_object_are_offered_and_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Custom tools registered on the agent reach the model and execute."""
    agent = make_agent(profile="readonly")
    agent.registry.register(_add)
    agent.registry.register(EchoTool())
    server.add(
        Reply.tool_calls(
            [
                ToolCallSpec(name="_add", arguments={"a": 2, "b": "3"}),
                ToolCallSpec(name="echo", arguments={"text": "hey"}),
            ],
            text="Working on it.",
        ),
        Reply.text("5 and hey"),
    )
    session = Session(agent)
    result = await session.run(prompt="do it")
    assert result.status == "completed"
    offered = {t["function"]["name"]: t["function"] for t in server.chat_requests[0].tools}
    assert offered["_add"]["parameters"]["required"] == ["a", "b"]
    assert offered["_add"]["parameters"]["properties"]["a"] == {
        "type": "integer",
        "description": "The first number.",
    }
    assert offered["_add"]["description"] == "Add two integers."
    tool_results = [m["content"] for m in server.chat_requests[1].messages if m["role"] == "tool"]
    assert tool_results == ["5", "echo: hey"]
    # Text that came with the tool calls is kept in the history.
    assistant = next(m for m in session.state.messages if m["role"] == "assistant")
    assert assistant["content"] == "Working on it."
    ends = [e for e in result.events if e.type == "tool_end"]
    assert all("duration_ms" in (e.tool_metadata or {}) for e in ends)
    assert ends[1].tool_metadata is not None
    assert ends[1].tool_metadata["session"] == session.id


async def test_malformed_tool_arguments_go_back_to_the_model(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Broken tool-call JSON becomes a tool error the model reads, not a crash or {}."""
    agent = make_agent()
    calls: list[Any] = []

    async def record(text: str) -> str:
        """Record text."""
        calls.append(text)
        return "ok"

    agent.registry.register(record)
    server.add(
        Reply.tool_calls([ToolCallSpec(name="record", arguments='{"text": "unterminated')]),
        Reply.text("sorry"),
    )
    result = await Session(agent).run(prompt="go")
    assert result.status == "completed"
    assert calls == []
    tool_message = next(m for m in server.chat_requests[1].messages if m["role"] == "tool")
    assert "invalid JSON" in tool_message["content"]
    assert "unterminated" in tool_message["content"]


async def test_schema_violation_and_unknown_tool_are_tool_errors(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Wrong argument types and unknown tools are reported to the model."""
    agent = make_agent()
    agent.registry.register(_add)
    server.add(
        Reply.tool_calls(
            [
                ToolCallSpec(name="_add", arguments={"a": "two", "b": 1}),
                ToolCallSpec(name="nope", arguments={}),
            ]
        ),
        Reply.text("done"),
    )
    result = await Session(agent).run(prompt="go")
    results = [m["content"] for m in server.chat_requests[1].messages if m["role"] == "tool"]
    assert "invalid arguments for '_add'" in results[0] and "a" in results[0]
    assert "unknown tool 'nope'" in results[1]
    assert result.status == "completed"


async def test_max_turns_stops_a_looping_model(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A model that never stops calling tools is cut off at max_turns."""
    agent = make_agent(max_turns=3)
    agent.registry.register(_add)
    for _ in range(5):
        server.add(Reply.tool_call("_add", {"a": 1, "b": 1}))
    session = Session(agent)
    result = await session.run(prompt="loop")
    assert result.status == "error"
    assert result.error is not None and "max_turns (3)" in result.error
    assert len(server.chat_requests) == 3
    _assert_tool_calls_answered(session)


async def test_event_stream_sees_every_event(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """`async for` over session.events() yields the same events as the run."""
    server.add(Reply.text("streamed words here", chunk_size=4))
    session = Session(make_agent())
    seen: list[AgentEvent] = []
    result: list[RunResult] = []
    stream = session.events()

    async def consume() -> None:
        async for event in stream:
            seen.append(event)
            if event.type == "turn_complete":
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        result.append(await session.run(prompt="go"))
    stream.close()
    assert seen == result[0].events
    assert sum(1 for e in seen if e.type == "text") >= 4


async def test_async_on_event_callback_and_failing_callback(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Async callbacks are awaited; a raising callback fails the run, not the session."""
    server.add(Reply.text("fine"), Reply.text("again"))
    session = Session(make_agent())
    types: list[str] = []

    async def on_event(event: AgentEvent) -> None:
        await trio.lowlevel.checkpoint()
        types.append(event.type)

    ok = await session.run(prompt="a", on_event=on_event)
    assert ok.status == "completed" and "turn_complete" in types

    def broken(event: AgentEvent) -> None:
        raise RuntimeError("subscriber bug")

    bad = await session.run(prompt="b", on_event=broken)
    assert bad.status == "error"
    assert bad.error is not None and "subscriber bug" in bad.error
    server.add(Reply.text("still works"))
    assert (await session.run(prompt="c")).text == "still works"


async def test_cancel_mid_stream_closes_the_connection(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """session.cancel() ends the run promptly and the server sees the disconnect."""
    server.add(Reply.text("x" * 400, chunk_size=2, chunk_delay=0.01))
    session = Session(make_agent())
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await session.run(prompt="long"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await server.wait_until(lambda: server.open_streams == 1)
        await trio.sleep(0.05)
        await session.cancel("user pressed stop")
    assert results[0].status == "cancelled"
    assert results[0].cancel_reason == "user pressed stop"
    assert results[0].events[-1].type == "cancelled"
    with trio.fail_after(2):
        await server.wait_for_disconnects(1)
    assert server.completed_streams == 0
    # Not sticky: the next run completes normally.
    server.add(Reply.text("next"))
    assert (await session.run(prompt="again")).status == "completed"


async def test_cancel_during_tool_leaves_state_valid(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A run cancelled inside a tool answers every tool call, so the next run works."""
    agent = make_agent()
    started = trio.Event()

    async def slow(seconds: int) -> str:
        """Wait a while."""
        started.set()
        await trio.sleep(seconds)
        return "done"

    agent.registry.register(slow)
    server.add(
        Reply.tool_calls(
            [
                ToolCallSpec(name="slow", arguments={"seconds": 60}),
                ToolCallSpec(name="slow", arguments={"seconds": 1}),
            ]
        )
    )
    session = Session(agent)
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await session.run(prompt="go"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await started.wait()
        await session.cancel()
    assert results[0].status == "cancelled"
    _assert_tool_calls_answered(session)
    server.add(Reply.text("recovered"))
    result = await session.run(prompt="next")
    assert result.status == "completed"
    sent = server.chat_requests[-1].messages
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]


async def test_enclosing_scope_cancel_reaches_the_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A trio deadline around run() cancels the run and closes the stream."""
    server.add(Reply.text("y" * 200, chunk_size=1, chunk_delay=0.01))
    session = Session(make_agent())
    with trio.move_on_after(0.2):
        await session.run(prompt="slow")
    with trio.fail_after(2):
        await server.wait_for_disconnects(1)
    assert session.state.status == "cancelled"
    server.add(Reply.text("ok"))
    assert (await session.run(prompt="again")).status == "completed"


async def test_run_timeout_is_a_cancellation(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """run_timeout ends a stalled run with status cancelled and a reason."""
    server.add(Reply.text("never finishes", first_byte_delay=3600))
    session = Session(make_agent())
    session.run_timeout = 30
    result = await session.run(prompt="wait")
    assert result.status == "cancelled"
    assert result.cancel_reason == "deadline exceeded"


async def test_cancel_check_is_honoured(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A cancel_check returning True cancels the run in flight."""
    server.add(Reply.text("z" * 200, chunk_size=1, chunk_delay=0.01))
    session = Session(make_agent())
    flag = {"stop": False}
    session.cancel_check = lambda: flag["stop"]

    async def flip() -> None:
        await trio.sleep(0.1)
        flag["stop"] = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flip)
        result = await session.run(prompt="go")
    assert result.status == "cancelled"
    assert result.cancel_reason == "cancel_check returned True"


async def test_concurrent_runs_on_one_session_queue_in_order(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Two runs sent at once are handled one after the other, in order."""
    server.add(Reply.text("first", chunk_delay=0.01), Reply.text("second"))
    session = Session(make_agent())
    results: dict[str, RunResult] = {}

    async def run(prompt: str) -> None:
        results[prompt] = await session.run(prompt=prompt)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "p1")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(run, "p2")
    assert results["p1"].text == "first" and results["p2"].text == "second"
    assert [m["content"] for m in session.state.messages] == ["p1", "first", "p2", "second"]


async def test_sessions_under_a_supervisor_share_services(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Many sessions spawned under open_supervisor run concurrently and independently."""
    agent = make_agent()
    n = 20
    server.default = lambda request: Reply.text("answer to " + request.messages[-1]["content"])
    results: dict[int, RunResult] = {}
    async with open_supervisor() as sup:
        sessions = [await sup.start_session(agent) for _ in range(n)]
        assert len(sup.sessions) == n

        async def run(i: int) -> None:
            results[i] = await sessions[i].run(prompt=f"q{i}")

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(run, i)
    assert {i: r.text for i, r in results.items()} == {i: f"answer to q{i}" for i in range(n)}
    assert len(server.chat_requests) == n


async def test_supervised_session_cancel_by_caller_scope(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Cancelling the caller of a hosted session's run cancels that run, not the session."""
    server.add(Reply.text("w" * 300, chunk_size=1, chunk_delay=0.01))
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent())
        with trio.move_on_after(0.1):
            await session.run(prompt="slow")
        with trio.fail_after(2):
            await server.wait_for_disconnects(1)
            await session.wait_idle()
        assert session.state.status == "cancelled"
        server.add(Reply.text("alive"))
        assert (await session.run(prompt="next")).text == "alive"


async def test_request_body_bypasses_the_openai_transform(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """The JSON body we build by hand is a valid chat request with every setting."""
    agent = make_agent(temperature=0.2, reasoning_effort="low")
    agent.registry.register(_add)
    server.add(Reply.text("ok"))
    await Session(agent).run(prompt="body")
    request = server.chat_requests[0]
    assert request.headers["content-type"] == "application/json"
    assert request.json["model"] == "scripted"
    assert request.json["temperature"] == 0.2
    assert request.json["reasoning_effort"] == "low"
    assert any(t["function"]["name"] == "_add" for t in request.json["tools"])
    assert json.loads(json.dumps(request.json["messages"])) == [{"role": "user", "content": "body"}]


@pytest.mark.parametrize("n_sessions", [3])
async def test_many_sessions_from_one_agent_do_not_share_state(
    server: ScriptedServer, make_agent: Callable[..., Agent], n_sessions: int
) -> None:
    """An Agent is stateless: sessions made from it have separate histories."""
    agent = make_agent()
    server.default = lambda request: Reply.text(str(len(request.messages)))
    sessions = [Session(agent) for _ in range(n_sessions)]
    for s in sessions:
        await s.run(prompt="x")
    assert [len(s.state.messages) for s in sessions] == [2] * n_sessions
