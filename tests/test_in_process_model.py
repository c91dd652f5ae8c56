"""The in-process model: the scripted model's answers through an httpx2 transport, no sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from rho_actors import Agent, AgentConfig, Session, open_supervisor
from rho_actors.testing import Fault, Reply, open_in_process_model


def _agent(base_url: str, tmp_path: Path, **fields: Any) -> Agent:
    return Agent(AgentConfig(base_url=base_url, model="m", working_dir=str(tmp_path), **fields))


async def test_a_tool_run_goes_through_the_real_client_without_a_socket(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello\n")
    async with open_in_process_model() as model:
        # ".invalid" never resolves: a request that tried the network would fail.
        assert model.base_url.startswith("http://in-process-")
        assert ".invalid/" in model.base_url
        model.add(Reply.tool_call("read", {"path": "a.txt"}), Reply.text("It says hello."))
        result = await Session(_agent(model.base_url, tmp_path)).run("read a.txt")
    assert result.status == "completed"
    assert result.text == "It says hello."
    assert result.usage["api_calls"] == 2
    first, second = model.chat_requests
    assert first.stream and first.json["stream_options"] == {"include_usage": True}
    assert second.messages[-1]["role"] == "tool"
    assert "hello" in second.messages[-1]["content"]


async def test_http_faults_and_retry_after(tmp_path: Path) -> None:
    async with open_in_process_model() as model:
        model.add(Fault.rate_limited(retry_after=0.05), Reply.text("after the wait"))
        result = await Session(_agent(model.base_url, tmp_path)).run("hi")
    assert result.text == "after the wait"
    (retry,) = [e for e in result.events if e.type == "retry"]
    assert retry.content is not None and "HTTP 429" in retry.content
    assert "retrying in" in retry.content


async def test_a_stalled_stream_is_cut_by_the_idle_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """No sockets, so the plain autojump clock is exact (no loopback grace needed)."""
    async with open_in_process_model() as model:
        model.add(Fault.stall(after_chunks=1), Reply.text("second try"))
        agent = _agent(model.base_url, tmp_path, stream_idle_timeout=30.0)
        result = await Session(agent).run("hi")
    assert result.text == "second try"
    assert any("30 s" in (e.content or "") for e in result.events if e.type == "retry")


async def test_many_sessions_under_a_supervisor(tmp_path: Path) -> None:
    async with open_in_process_model(default=lambda r: Reply.text("ok")) as model:
        agent = _agent(model.base_url, tmp_path)
        async with open_supervisor() as sup, trio.open_nursery() as nursery:
            for i in range(200):
                session = await sup.start_session(agent)
                nursery.start_soon(session.run, f"task {i}")
    assert len(model.chat_requests) == 200
