"""MCP servers as supervised connections (issue 17): a real MCP server from the ``mcp``
package, over stdio and streamable HTTP, driven by the scripted model through
sessions."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from rho_actors import Agent, AgentEvent, ConfigError, Session, open_supervisor
from rho_actors.testing import Reply, ScriptedServer

DEMO = str(Path(__file__).parent.parent / "examples" / "mcp_demo_server.py")
STDIO = {"name": "demo", "command": sys.executable, "args": [DEMO]}


def _results(events: list[AgentEvent]) -> list[str]:
    return [str(e.tool_result) for e in events if e.type == "tool_end"]


def _demo_processes() -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if DEMO.encode() in cmdline and b"pytest" not in cmdline:
            found.append(int(entry))
    return found


async def test_a_stdio_server_s_tool_is_offered_and_called(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.tool_call("demo__add", {"a": 2, "b": 40}), Reply.text("42"))
    events: list[AgentEvent] = []
    result = await Session(make_agent(mcp_servers=[STDIO])).run("add", on_event=events.append)
    assert result.status == "completed" and _results(events) == ["42"]
    offered = {t["function"]["name"] for t in server.chat_requests[0].tools}
    assert {"demo__add", "demo__write_note", "read"} <= offered
    add = next(t for t in server.chat_requests[0].tools if t["function"]["name"] == "demo__add")
    assert add["function"]["parameters"]["properties"].keys() == {"a", "b"}


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await trio.lowlevel.open_process(
        [sys.executable, DEMO, "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(30):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", port)
                    await stream.aclose()
                    break
                except OSError:
                    await trio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        await proc.wait()


# The mcp SDK's streamable-HTTP client leaves httpx2's SSE generators for the
# garbage collector when its session closes (an SDK issue, not ours: our model
# client closes its streams). Ignored for this test only.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_streamable_http_server_works_the_same(
    server: ScriptedServer, make_agent: Callable[..., Agent], http_server: str
) -> None:
    server.add(Reply.tool_call("web__add", {"a": 1, "b": 2}), Reply.text("3"))
    events: list[AgentEvent] = []
    agent = make_agent(mcp_servers=[{"name": "web", "url": http_server}])
    result = await Session(agent).run("add", on_event=events.append)
    assert result.status == "completed" and _results(events) == ["3"]


async def test_a_server_killed_mid_call_errors_clearly_and_the_next_call_reconnects(
    server: ScriptedServer, make_agent: Callable[..., Agent], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rho_actors.mcp")
    server.add(
        Reply.tool_call("demo__whoami", {}),
        Reply.tool_call("demo__crash", {}),
        Reply.tool_call("demo__whoami", {}),
        Reply.text("done"),
    )
    events: list[AgentEvent] = []
    session = Session(make_agent(mcp_servers=[STDIO]))
    with trio.fail_after(60):
        result = await session.run("go", on_event=events.append)
    assert result.status == "completed"
    first, crashed, second = _results(events)
    assert "'demo'" in crashed and "lost its connection" in crashed
    assert first.isdigit() and second.isdigit() and first != second, (first, crashed, second)
    logged = [r.getMessage() for r in caplog.records if r.name == "rho_actors.mcp"]
    assert any(m.startswith("MCP server 'demo': connection lost") for m in logged), logged
    assert "MCP server 'demo': reconnected" in logged


async def test_cancelling_a_run_cancels_its_mcp_call(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.tool_call("demo__slow", {"seconds": 30}))
    session = Session(make_agent(mcp_servers=[STDIO]))
    events: list[AgentEvent] = []
    with trio.move_on_after(3) as scope:
        await session.run("wait", on_event=events.append)
    assert scope.cancelled_caught
    assert any(e.type == "tool_start" for e in events)
    # The connection is still good for the next call.
    server.add(Reply.tool_call("demo__add", {"a": 1, "b": 1}), Reply.text("2"))
    more: list[AgentEvent] = []
    with trio.fail_after(30):
        await session.run("again", on_event=more.append)
    assert _results(more) == ["2"]


async def test_sessions_of_a_supervisor_share_one_connection_and_leave_no_process(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.default = lambda request: (
        Reply.text("ok")
        if request.messages[-1]["role"] == "tool"
        else Reply.tool_call("demo__whoami", {})
    )
    pids: list[str] = []

    def collect(event: AgentEvent) -> None:
        if event.type == "tool_end":
            pids.append(str(event.tool_result))

    async with open_supervisor() as supervisor:
        sessions = [
            await supervisor.start_session(make_agent(mcp_servers=[STDIO])) for _ in range(5)
        ]

        async def ask(session: Session) -> None:
            await session.run("who", on_event=collect)

        async with trio.open_nursery() as nursery:
            for session in sessions:
                nursery.start_soon(ask, session)
        assert len(pids) == 5 and len(set(pids)) == 1
        assert _demo_processes() == [int(pids[0])]
    assert _demo_processes() == []


async def test_a_cancelled_supervisor_leaves_no_process(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.tool_call("demo__slow", {"seconds": 30}))
    with trio.move_on_after(3):
        async with open_supervisor() as supervisor:
            session = await supervisor.start_session(make_agent(mcp_servers=[STDIO]))
            await session.run("wait")
    with trio.fail_after(10):
        while _demo_processes():  # noqa: ASYNC110 - another process: nothing to wait on
            await trio.sleep(0.05)


async def test_readonly_is_offered_only_read_only_tools(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    from rho_actors import PermissionProfile

    server.add(Reply.text("ok"), Reply.text("ok"))
    await Session(make_agent(profile="readonly", mcp_servers=[STDIO])).run("list")
    offered = {t["function"]["name"] for t in server.chat_requests[0].tools}
    assert "demo__add" in offered and "demo__write_note" not in offered
    # Named in the profile's tools list, a tool without the hint is offered.
    named = PermissionProfile(name="ro-notes", tools=["read", "demo__add", "demo__write_note"])
    await Session(make_agent(profile=named, mcp_servers=[STDIO])).run("list")
    offered = {t["function"]["name"] for t in server.chat_requests[1].tools}
    assert offered == {"read", "demo__add", "demo__write_note"}


async def test_approvals_follow_annotations_and_policy(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.tool_call("demo__write_note", {"text": "x"}))
    agent = make_agent(profile="developer", auto_approve=False, mcp_servers=[STDIO])
    result = await Session(agent).run("note")
    assert result.status == "paused"  # not read-only: dangerous under developer
    server.add(Reply.tool_call("demo__add", {"a": 1, "b": 2}), Reply.text("3"))
    assert (await Session(agent).run("add")).status == "completed"  # read-only: goes ahead
    never = make_agent(
        profile="developer", auto_approve=False, mcp_servers=[{**STDIO, "approval": "never"}]
    )
    server.add(Reply.tool_call("demo__write_note", {"text": "y"}), Reply.text("noted"))
    assert (await Session(never).run("note")).status == "completed"


async def test_allow_and_deny_lists(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.text("ok"))
    spec: dict[str, Any] = {**STDIO, "allow": ["add", "slow"], "deny": ["slow"]}
    await Session(make_agent(mcp_servers=[spec])).run("x")
    offered = {t["function"]["name"] for t in server.chat_requests[0].tools}
    assert {n for n in offered if n.startswith("demo__")} == {"demo__add"}


async def test_an_unreachable_server_is_reported_and_the_run_goes_on(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.text("fine without it"))
    events: list[AgentEvent] = []
    agent = make_agent(mcp_servers=[{"name": "gone", "command": "/nonexistent/mcp-server"}])
    result = await Session(agent).run("x", on_event=events.append)
    assert result.text == "fine without it"
    assert any(e.type == "error" and "'gone'" in str(e.content) for e in events)


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"command": "x"}, "mcp_servers[0].name"),
        ({"name": "a", "command": "x", "url": "http://h"}, "mcp_servers[0].command"),
        ({"name": "a", "url": "ftp://h"}, "mcp_servers[0].url"),
        ({"name": "a", "command": "x", "approval": "maybe"}, "mcp_servers[0].approval"),
        ({"name": "a", "command": "x", "colour": "red"}, "mcp_servers[0].colour"),
    ],
)
def test_bad_server_entries_name_the_field(entry: dict[str, Any], key: str) -> None:
    from rho_actors import AgentConfig

    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        Agent(AgentConfig(mcp_servers=[entry]))


def test_cli_mcp_list_shows_each_server_s_tools(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"profile: readonly\nmcp_servers:\n  - name: demo\n    command: {sys.executable}\n"
        f"    args: [{DEMO}]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "rho_actors", "mcp", "list", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "demo: 6 tools" in done.stdout
    note = next(line for line in done.stdout.splitlines() if "write_note" in line)
    assert "not offered (readonly)" in note


async def test_cli_run_takes_mcp_servers_as_flags(server: ScriptedServer, tmp_path: Path) -> None:
    server.add(Reply.tool_call("calc__add", {"a": 20, "b": 22}), Reply.text("it is 42"))
    done = await trio.run_process(
        [
            sys.executable,
            "-m",
            "rho_actors",
            "run",
            "add them",
            "--store",
            str(tmp_path / "sessions"),
            "--base-url",
            server.base_url,
            "--model",
            "scripted",
            "--working-dir",
            str(tmp_path),
            "--mcp",
            f"calc={sys.executable} {DEMO}",
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"it is 42" in done.stdout
    assert any(m.get("content") == "42" for m in server.chat_requests[1].messages)


async def test_a_changed_tool_list_is_offered_on_the_next_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """The server's notifications/tools/list_changed makes the next run list again."""
    server.add(Reply.tool_call("demo__grow", {}), Reply.text("grown"))
    session = Session(make_agent(mcp_servers=[STDIO]))
    await session.run("grow")
    assert "demo__extra" not in {t["function"]["name"] for t in server.chat_requests[0].tools}
    server.add(Reply.tool_call("demo__extra", {}), Reply.text("done"))
    events: list[AgentEvent] = []
    await session.run("use the new tool", on_event=events.append)
    assert "demo__extra" in {t["function"]["name"] for t in server.chat_requests[2].tools}
    assert _results(events) == ["extra!"]
