"""The trio-native HTTP transport (the default) and the stock one, side by side.

The integration suites below run under both: here in this process with the
default, and in a child pytest with ``RHO_ACTORS_HTTP_TRANSPORT=httpx``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from rho_actors import Agent, AgentConfig, Session, open_supervisor
from rho_actors._transport import TRANSPORT_ENV, transport_choice
from rho_actors.testing import Fault, Reply, ScriptedServer

INTEGRATION = [
    "tests/test_session.py",
    "tests/test_llm.py",
    "tests/test_silent_server.py",
    "tests/test_real_server_compat.py",
    "tests/test_scripted_dialects.py",
    "tests/test_every_request_answered.py",
    "tests/test_cancel_token.py",
]


def test_the_integration_suites_pass_on_the_stock_transport() -> None:
    root = Path(__file__).parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *INTEGRATION],
        cwd=root,
        env={**os.environ, TRANSPORT_ENV: "httpx"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_the_choice_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRANSPORT_ENV, raising=False)
    assert transport_choice() == "trio"
    monkeypatch.setenv(TRANSPORT_ENV, "HTTPX")
    assert transport_choice() == "httpx"
    monkeypatch.setenv(TRANSPORT_ENV, "curl")
    with pytest.raises(ValueError, match="RHO_ACTORS_HTTP_TRANSPORT: expected one of trio, httpx"):
        transport_choice()


async def test_sequential_runs_reuse_one_connection(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.default = lambda request: Reply.text("ok")
    session = Session(make_agent())
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent())
        for i in range(5):
            assert (await session.run(f"run {i}")).text == "ok"
    assert len(server.chat_requests) == 5
    assert server.connections == 1


async def test_a_connection_the_server_dropped_is_replaced(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A keep-alive connection reset mid-stream is not reused: the next run gets a new one."""
    server.add(Reply.text("first"), Fault.reset_mid_stream(after_chunks=1), Reply.text("third"))
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent())
        assert (await session.run("one")).text == "first"
        broken = await session.run("two")
        assert broken.status == "error" and "stream failed" in (broken.error or "")
        assert (await session.run("three")).text == "third"
    assert server.connections == 2


async def test_an_unreachable_port_is_a_connect_error(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: refused
    agent = Agent(
        AgentConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", working_dir=str(tmp_path))
    )
    result = await Session(agent).run("hi")
    assert result.status == "error"
    assert result.error is not None and "connect" in result.error.lower()


async def test_cancelling_a_run_closes_its_stream_at_the_server(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Fault.stall(after_chunks=1))
    session = Session(make_agent(stream_idle_timeout=60.0))
    handle = await session.start("hang")
    await server.wait_for_requests(1)
    handle.cancel("stop")
    with trio.fail_after(2):
        await server.wait_for_disconnects(1)
        assert (await handle.wait()).status == "cancelled"
