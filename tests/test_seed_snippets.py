"""The seed SDK document's snippets, run as written with trio in place of asyncio."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import rho_actors
from rho_actors import Agent, AgentConfig, Session, SessionStore
from rho_actors.testing import Reply, ScriptedServer


@pytest.fixture
def seed_env(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the env-var defaults at the scripted server, as a user would."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    server.default = lambda request: Reply.text(f"answer #{len(server.chat_requests)}")
    work = tmp_path / "work"
    work.mkdir()
    return work


async def test_basic_usage(seed_env: Path) -> None:
    """Basic usage: AgentConfig -> Agent -> Session -> run."""
    config = AgentConfig(
        system_prompt="You are a research assistant.",
        profile="developer",
        model="gpt-5-mini",
        working_dir=str(seed_env),
    )
    agent = Agent(config)
    session = Session(agent)
    result = await session.run(prompt="Analyze recent failures and summarize root causes.")
    assert result.text.startswith("answer")


async def test_multi_run_conversation(seed_env: Path) -> None:
    """Multi-run conversation on a readonly agent."""
    agent = Agent(AgentConfig(system_prompt="You are a database analyst.", profile="readonly"))
    session = Session(agent)
    r1 = await session.run(prompt="List all tables in the database.")
    r2 = await session.run(prompt="Show me the schema for the users table.")
    r3 = await session.run(prompt="Find users who signed up in the last 7 days.")
    assert [r.status for r in (r1, r2, r3)] == ["completed"] * 3
    assert session.state.run_count == 3


async def test_parallel_dispatch_with_a_nursery(seed_env: Path) -> None:
    """Parallel dispatch: a nursery instead of asyncio.create_task/gather."""

    async def analyze(task_prompt: str, work_dir: str) -> str:
        config = AgentConfig(
            system_prompt="You are an analyst.", profile="readonly", working_dir=work_dir
        )
        session = Session(Agent(config))
        result = await session.run(prompt=task_prompt)
        return result.text

    results: dict[int, str] = {}

    async def keep(i: int, prompt: str) -> None:
        results[i] = await analyze(prompt, str(seed_env))

    async with trio.open_nursery() as nursery:
        for i, prompt in enumerate(["Check error rates.", "Check latency.", "Check disk usage."]):
            nursery.start_soon(keep, i, prompt)
    assert sorted(results) == [0, 1, 2] and all(t.startswith("answer") for t in results.values())


async def test_custom_tools(seed_env: Path, server: ScriptedServer) -> None:
    """Custom tools: register before creating the session."""

    async def my_custom_handler(data: str) -> str:
        """Process the data."""
        return data.upper()

    agent = Agent(AgentConfig(profile="developer"))
    agent.registry.register(my_custom_handler)
    server.add(Reply.tool_call("my_custom_handler", {"data": "abc"}), Reply.text("ABC done"))
    session = Session(agent)
    result = await session.run(prompt="Use my custom tool to process the data.")
    assert result.text == "ABC done"
    assert any(e.type == "tool_end" and e.tool_result == "ABC" for e in result.events)


async def test_save_and_resume(seed_env: Path, tmp_path: Path) -> None:
    """Save and resume via SessionStore."""
    store = SessionStore(tmp_path / "store")
    agent = Agent(AgentConfig(system_prompt="You are a research assistant.", profile="developer"))
    session = store.create_session(agent)
    await session.run(prompt="Start analyzing the codebase.")
    session_id = session.state.session_id
    session = store.resume(session_id, agent)
    result = await session.run(prompt="Continue where we left off.")
    assert result.status == "completed" and session.state.run_count == 2


async def test_session_settable_attributes_and_context_manager(seed_env: Path) -> None:
    """Settable attributes exist; the async context manager and close() work locally."""
    async with Session(Agent(AgentConfig(profile="developer"))) as session:
        session.approval_callback = None
        session.cancel_check = lambda: False
        session.auto_compact = True
        session.context_window = 128_000
        result = await session.run(prompt="Check the deployment status.")
        assert result.status == "completed"
        assert await session.get_sandbox() is None


def test_exports_are_complete() -> None:
    """Every public name is exported explicitly and importable."""
    assert len(set(rho_actors.__all__)) == len(rho_actors.__all__)
    from rho_actors._events import EVENT_TYPES

    seed_event_types = {
        "text",
        "tool_start",
        "tool_end",
        "tool_blocked",
        "api_call_complete",
        "turn_complete",
        "compact_start",
        "compact_end",
        "error",
        "cancelled",
        "interruption",
    }
    assert seed_event_types <= EVENT_TYPES
    for name in rho_actors.__all__:
        assert hasattr(rho_actors, name), name
    for name in (
        "Agent",
        "AgentConfig",
        "Session",
        "State",
        "SessionStore",
        "SessionInfo",
        "RunResult",
        "AgentEvent",
        "CompactResult",
        "ApprovalInterrupt",
        "open_supervisor",
    ):
        assert name in rho_actors.__all__


def test_run_with_trio_run() -> None:
    """The seed's top-level pattern works with trio.run and nothing else."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import trio
        from rho_actors import Agent, AgentConfig, Session
        from rho_actors.testing import Reply, open_scripted_server

        async def main() -> None:
            async with open_scripted_server(replies=[Reply.text("hi from trio")]) as server:
                config = AgentConfig(system_prompt="You are a research assistant.",
                                     profile="developer", base_url=server.base_url)
                session = Session(Agent(config))
                result = await session.run(prompt="Analyze.")
                print(result.text)

        trio.run(main)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hi from trio"
