"""Process recovery: kill -9 a process mid-run, then recover its sessions in another."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

from killed import output_until_killed

from rho_actors import Agent, SessionStore, open_supervisor
from rho_actors.testing import Reply, ScriptedServer

_CHILD = textwrap.dedent(
    """
    import sys, trio
    from rho_actors import Agent, AgentConfig, SessionStore, function_tool, open_supervisor
    from rho_actors.testing import Reply, ToolCallSpec, open_scripted_server

    async def main():
        async with open_scripted_server() as server:
            server.add(
                Reply.text("first answer"),
                Reply.tool_calls([
                    ToolCallSpec(name="quick", arguments={}, id="done_1"),
                    ToolCallSpec(name="hang", arguments={}, id="hang_1"),
                ], text="working"),
            )
            agent = Agent(AgentConfig(base_url=server.base_url, model="child-model",
                                      profile="developer"))

            async def quick() -> str:
                '''Quick.'''
                return "quick result"

            async def hang() -> str:
                '''Hang.'''
                print("HANGING", flush=True)
                await trio.sleep_forever()
                return "never"

            agent.registry.register(quick)
            agent.registry.register(hang)
            store = SessionStore(sys.argv[1])
            async with open_supervisor(store=store) as sup:
                session = await sup.start_session(agent)
                print(session.id, flush=True)
                await session.run(prompt="warm up")
                await session.run(prompt="do the long thing")

    trio.run(main)
    """
)


async def test_kill_9_mid_run_then_recover(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """After SIGKILL the run is listed interrupted; recovery restores it and it continues."""
    root = tmp_path / "sessions"
    buffer = await output_until_killed(_CHILD, str(root), until=b"HANGING")
    session_id = buffer.split(b"\n")[0].decode().strip()

    store = SessionStore(root)
    info = next(i for i in store.list() if i.id == session_id)
    assert info.status == "interrupted"
    assert info.current_tool == "hang, quick" and info.model == "child-model"
    assert store.agent_for(session_id).config.model == "child-model"

    agent = make_agent()
    server.add(Reply.text("resumed and finished"))
    async with open_supervisor(store=store) as sup:
        recovered = await sup.recover(lambda sid: agent)
        assert [s.id for s in recovered] == [session_id]
        session = recovered[0]
        state = session.state
        assert state.status == "interrupted"
        assert state.run_count == 1  # the warm-up run finished; the second did not
        assert [m["content"] for m in state.messages if m["role"] == "user"] == [
            "warm up",
            "do the long thing",
        ]
        results = {m["tool_call_id"]: m["content"] for m in state.messages if m["role"] == "tool"}
        assert results["done_1"] == "quick result"
        assert results["hang_1"].startswith("[interrupted")
        assert state.usage["api_calls"] == 2
        result = await session.resume()
        assert result.status == "completed" and result.text == "resumed and finished"
        # The continued run sent the whole restored history.
        roles = [m["role"] for m in server.chat_requests[-1].messages]
        assert roles == ["user", "assistant", "user", "assistant", "tool", "tool"]
    assert next(i for i in store.list() if i.id == session_id).status == "completed"
