"""The delegate tool: child sessions under the parent's services."""

from __future__ import annotations

from collections.abc import Callable

import trio

from rho_actors import Agent, RunResult, Session
from rho_actors.testing import RecordedRequest, Reply, ScriptedServer, Usage


def _tool_results(request: RecordedRequest) -> list[str]:
    return [m["content"] for m in request.messages if m["role"] == "tool"]


async def test_child_answers_and_usage_rolls_up(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """The child's answer is the tool result and its tokens count for the parent."""
    u = Usage(prompt_tokens=10, completion_tokens=5)
    server.add(
        Reply.tool_call("delegate", {"prompt": "sub-task"}, usage=u),
        Reply.text("child answer", usage=Usage(prompt_tokens=100, completion_tokens=50)),
        Reply.text("parent done", usage=u),
    )
    session = Session(make_agent())
    result = await session.run(prompt="split the work")
    assert result.status == "completed"
    assert _tool_results(server.chat_requests[2]) == ["child answer"]
    # The child saw only its own prompt.
    assert [m["content"] for m in server.chat_requests[1].messages if m["role"] == "user"] == [
        "sub-task"
    ]
    assert result.usage["input_tokens"] == 120
    assert session.state.usage["input_tokens"] == 120
    end = next(e for e in result.events if e.type == "tool_end")
    assert end.tool_metadata is not None and end.tool_metadata["child_status"] == "completed"


async def test_child_may_not_escalate_its_profile(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Asking for a more permissive profile than the parent's is refused."""
    server.add(
        Reply.tool_call("delegate", {"prompt": "x", "profile": "unrestricted"}),
        Reply.text("ok"),
    )
    await Session(make_agent(profile="developer")).run(prompt="go")
    assert "may use the parent's profile" in _tool_results(server.chat_requests[1])[0]


async def test_readonly_child_has_no_write_tool(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A child asked to be readonly is offered no write tools."""
    server.add(
        Reply.tool_call("delegate", {"prompt": "look", "profile": "readonly"}),
        Reply.text("looked"),
        Reply.text("ok"),
    )
    await Session(make_agent(profile="developer")).run(prompt="go")
    child_tools = {t["function"]["name"] for t in server.chat_requests[1].tools}
    assert "write" not in child_tools and "edit" not in child_tools
    assert "read" in child_tools


async def test_depth_is_bounded(server: ScriptedServer, make_agent: Callable[..., Agent]) -> None:
    """A grandchild at the maximum depth is not offered delegate at all."""
    server.add(
        Reply.tool_call("delegate", {"prompt": "level 1"}),
        Reply.tool_call("delegate", {"prompt": "level 2"}),
        Reply.text("deepest"),
        Reply.text("middle"),
        Reply.text("top"),
    )
    result = await Session(make_agent()).run(prompt="recurse")
    assert result.status == "completed"
    offered = [{t["function"]["name"] for t in r.tools} for r in server.chat_requests[:3]]
    assert "delegate" in offered[0] and "delegate" in offered[1]
    assert "delegate" not in offered[2]


async def test_cancelling_the_parent_cancels_the_child(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A cancel of the parent run closes the child's stream too."""
    server.add(
        Reply.tool_call("delegate", {"prompt": "slow child"}),
        Reply.text("c" * 500, chunk_size=1, chunk_delay=0.01),
    )
    session = Session(make_agent())
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await session.run(prompt="go"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await server.wait_until(lambda: len(server.chat_requests) == 2 and server.open_streams == 1)
        await session.cancel("stop everything")
    assert results[0].status == "cancelled"
    with trio.fail_after(2):
        await server.wait_for_disconnects(1)
    assert server.chat_requests[1].disconnected
