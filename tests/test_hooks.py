"""Lifecycle hooks and guardrails, per agent and per supervisor."""

from __future__ import annotations

from collections.abc import Callable

import trio

from rho_actors import (
    Agent,
    AgentEvent,
    AgentHooks,
    CancellationToken,
    HookContext,
    RunResult,
    Session,
    function_tool,
    open_supervisor,
)
from rho_actors.testing import Reply, ScriptedServer


class Recorder(AgentHooks):
    def __init__(self, label: str = "") -> None:
        self.label = label
        self.calls: list[str] = []

    async def on_run_start(self, ctx: HookContext) -> None:
        self.calls.append(f"{self.label}run_start:{ctx.prompt}")

    async def on_run_end(self, ctx: HookContext, result: RunResult) -> None:
        self.calls.append(f"{self.label}run_end:{result.status}")

    async def on_model_start(self, ctx: HookContext, turn: int) -> None:
        self.calls.append(f"{self.label}model_start:{turn}")

    async def on_model_end(self, ctx: HookContext, event: AgentEvent) -> None:
        self.calls.append(f"{self.label}model_end")

    async def on_tool_start(self, ctx: HookContext, event: AgentEvent) -> None:
        self.calls.append(f"{self.label}tool_start:{event.tool_name}")

    async def on_tool_end(self, ctx: HookContext, event: AgentEvent) -> None:
        self.calls.append(f"{self.label}tool_end:{event.tool_name}")

    async def on_approval_request(self, ctx: HookContext, event: AgentEvent) -> None:
        self.calls.append(f"{self.label}approval:{event.tool_name}")


def _agent(make_agent: Callable[..., Agent], **options: object) -> Agent:
    return Agent(make_agent().config, **options)  # type: ignore[arg-type]


async def test_hooks_see_every_lifecycle_point_in_order(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.tool_call("list", {"path": "."}), Reply.text("done"))
    hooks = Recorder()
    result = await Session(_agent(make_agent, hooks=[hooks])).run("look")
    assert result.status == "completed"
    assert hooks.calls == [
        "run_start:look",
        "model_start:1",
        "model_end",
        "tool_start:list",
        "tool_end:list",
        "model_start:2",
        "model_end",
        "run_end:completed",
    ]


async def test_supervisor_hooks_run_after_the_agents(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.default = lambda request: Reply.text("hi")
    mine, everyone = Recorder("agent:"), Recorder("sup:")
    async with open_supervisor(hooks=[everyone]) as sup:
        session = await sup.start_session(_agent(make_agent, hooks=[mine]))
        await session.run("one")
        other = await sup.start_session(make_agent())
        await other.run("two")
    assert mine.calls[0] == "agent:run_start:one"
    assert [c for c in everyone.calls if "run_start" in c] == [
        "sup:run_start:one",
        "sup:run_start:two",
    ]
    assert len(mine.calls) == 4  # its own session only


async def test_approval_requests_reach_the_hook(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    async def launch(target: str) -> str:
        """Launch something irreversible."""
        return f"launched {target}"

    server.add(Reply.tool_call("launch", {"target": "x"}), Reply.text("ok"))
    hooks = Recorder()
    agent = _agent(make_agent, hooks=[hooks])
    agent.registry.register(function_tool(launch, requires_approval=True))
    session = Session(agent)
    session.approval_callback = lambda name, args: True
    await session.run("run it")
    assert hooks.calls.index("approval:launch") < hooks.calls.index("tool_start:launch")


async def test_a_raising_hook_fails_only_its_run_and_is_named(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    class Broken(AgentHooks):
        async def on_tool_start(self, ctx: HookContext, event: AgentEvent) -> None:
            raise ValueError("no tools today")

    server.default = lambda request: (
        Reply.tool_call("list", {"path": "."})
        if request.messages[-1]["role"] == "user"
        else Reply.text("listed")
    )
    async with open_supervisor() as sup:
        broken = await sup.start_session(_agent(make_agent, hooks=[Broken()]))
        fine = await sup.start_session(make_agent())
        async with trio.open_nursery() as nursery:
            results: dict[str, RunResult] = {}

            async def run(name: str, session: Session) -> None:
                results[name] = await session.run("list")

            nursery.start_soon(run, "broken", broken)
            nursery.start_soon(run, "fine", fine)
        assert results["fine"].status == "completed"
        assert results["broken"].status == "error"
        assert results["broken"].error == (
            "hook test_a_raising_hook_fails_only_its_run_and_is_named.<locals>.Broken"
            ".on_tool_start raised ValueError: no tools today"
        )
        # Nothing crashed or restarted; the failing session itself goes on.
        assert sup.restart_count == 0
        server.default = lambda request: Reply.text("still here")
        assert (await broken.run("hello")).text == "still here"


async def test_an_input_guardrail_blocks_before_the_model_is_called(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    def no_secrets(prompt: str) -> str | None:
        return "mentions a password" if "password" in prompt else None

    session = Session(_agent(make_agent, input_guardrails=[no_secrets]))
    result = await session.run("what is the admin password?")
    assert result.status == "error"
    assert result.blocked_by is not None and result.blocked_by.endswith("no_secrets")
    assert result.error is not None and "mentions a password" in result.error
    assert server.chat_requests == []
    assert [m["role"] for m in session.state.messages] == []
    server.add(Reply.text("fine"))
    assert (await session.run("hello")).status == "completed"


async def test_an_output_guardrail_blocks_the_answer(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    async def no_leaks(result: RunResult) -> str | None:
        return "leaks a key" if "sk-" in result.text else None

    server.add(Reply.text("the key is sk-123"))
    result = await Session(_agent(make_agent, output_guardrails=[no_leaks])).run("key?")
    assert result.status == "error"
    assert result.text == ""
    assert result.error is not None and "blocked by output guardrail" in result.error
    assert result.blocked_by is not None and result.blocked_by.endswith("no_leaks")


async def test_a_raising_guardrail_fails_the_run_with_its_name(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    def explode(prompt: str) -> None:
        raise RuntimeError("guard down")

    result = await Session(_agent(make_agent, input_guardrails=[explode])).run("hi")
    assert result.status == "error"
    assert result.error is not None
    assert "explode raised RuntimeError: guard down" in result.error


async def test_cancel_reaches_a_slow_output_guardrail(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    async def slow_review(result: RunResult) -> None:
        await trio.sleep(30)

    server.add(Reply.text("an answer nobody vetted"))
    session = Session(_agent(make_agent, output_guardrails=[slow_review]))
    handle = await session.start("answer")
    await server.wait_for_requests(1)
    await trio.sleep(0.3)
    handle.cancel("no time")
    with trio.fail_after(2):
        result = await handle.wait()
    assert (result.status, result.cancel_reason, result.text) == ("cancelled", "no time", "")


async def test_a_slow_on_run_end_hook_is_bounded(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    class Slow(AgentHooks):
        async def on_run_end(self, ctx: HookContext, result: RunResult) -> None:
            await trio.sleep(30)

    server.add(Reply.text("done"))
    with trio.fail_after(5):
        result = await Session(_agent(make_agent, hooks=[Slow()])).run("x")
    assert result.status == "error"
    assert result.error == "an on_run_end hook did not return within 2 s"


async def test_a_token_reaches_a_slow_input_guardrail(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    async def slow_check(prompt: str) -> None:
        await trio.sleep(30)

    token = CancellationToken()
    session = Session(_agent(make_agent, input_guardrails=[slow_check]))

    async def cancel_soon() -> None:
        await trio.sleep(0.3)
        token.cancel("changed my mind")

    with trio.fail_after(2):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_soon)
            result = await session.run("hello", token=token)
    assert (result.status, result.cancel_reason) == ("cancelled", "changed my mind")
    assert server.chat_requests == []
