"""Sessions on the Daytona backend: the real ``daytona`` SDK against the loopback fake
(issue 15). What is checked is what a user sees: where files land, what the profile
allows, that cancelled commands stop, and that sandboxes go away."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from rho_actors import (
    ActorCrashed,
    Agent,
    AgentConfig,
    AgentEvent,
    DaytonaBackend,
    Session,
    open_supervisor,
)
from rho_actors._daytona import LABEL_CREATED_BY, LABEL_HOST, LABEL_SESSION, sweep_sandboxes
from rho_actors.testing import FakeDaytona, Reply, ScriptedServer, crash_next_run


@pytest.fixture
def make_remote(
    server: ScriptedServer, fake_daytona: FakeDaytona, tmp_path: Path
) -> Callable[..., Agent]:
    def make(**fields: Any) -> Agent:
        fields.setdefault("base_url", server.base_url)
        fields.setdefault("model", "scripted")
        fields.setdefault("working_dir", str(tmp_path))
        fields.setdefault("profile", "developer")
        fields.setdefault(
            "backend",
            DaytonaBackend(
                api_key=fake_daytona.api_key, api_url=fake_daytona.api_url, target="local"
            ),
        )
        return Agent(AgentConfig(**fields))

    return make


def _live(fake: FakeDaytona) -> list[Any]:
    return [s for s in fake.sandboxes.values() if not s.deleted]


def _names_under(root: Path) -> set[str]:
    return {name for _, _, files in os.walk(root) for name in files}


def _results(server: ScriptedServer, index: int) -> list[str]:
    return [str(m["content"]) for m in server.chat_requests[index].messages if m["role"] == "tool"]


async def test_tools_act_in_the_sandbox_not_here(
    server: ScriptedServer,
    fake_daytona: FakeDaytona,
    make_remote: Callable[..., Agent],
    tmp_path: Path,
) -> None:
    server.add(
        Reply.tool_call("write", {"path": "notes/hello.txt", "content": "remote hello\n"}),
        Reply.tool_call("bash", {"command": "cat notes/hello.txt && pwd"}),
        Reply.tool_call("read", {"path": "notes/hello.txt"}),
        Reply.tool_call("list", {"path": "."}),
        Reply.tool_call("grep", {"pattern": "remote"}),
        Reply.tool_call("glob", {"pattern": "**/*.txt"}),
        Reply.tool_call(
            "edit", {"path": "notes/hello.txt", "old_string": "hello", "new_string": "bye"}
        ),
        Reply.text("done"),
    )
    async with Session(make_remote()) as session:
        result = await session.run(prompt="work remotely")
        assert result.status == "completed", result.error
        (sandbox,) = _live(fake_daytona)
        assert "hello.txt" in _names_under(sandbox.root)
        results = [_results(server, i)[-1] for i in range(1, 8)]
        assert "remote hello" in results[1]
        assert "remote hello" in results[2]
        assert "notes/" in results[3]
        assert "notes/hello.txt:1:remote hello" in results[4]
        assert "notes/hello.txt" in results[5]
        assert "Replaced 1" in results[6]
        assert not (tmp_path / "notes").exists()  # nothing landed on this machine
        assert sandbox.labels[LABEL_CREATED_BY] == "rho-actors"
        assert sandbox.labels[LABEL_SESSION] == session.id
        assert sandbox.labels[LABEL_HOST].endswith(f":{os.getpid()}")
        assert sandbox.auto_stop_interval == 15 and sandbox.auto_delete_interval == 30
        sdk_sandbox = await session.get_sandbox()
        assert sdk_sandbox.id == sandbox.id
        downloaded = tmp_path / "copy.txt"
        await session.download("notes/hello.txt", downloaded)
        assert downloaded.read_text() == "remote bye\n"
    assert _live(fake_daytona) == []  # leaving `async with` deleted it


async def test_readonly_holds_in_the_sandbox(
    server: ScriptedServer, fake_daytona: FakeDaytona, make_remote: Callable[..., Agent]
) -> None:
    server.add(
        Reply.tool_call("bash", {"command": "touch made-by-bash"}),
        Reply.tool_call("write", {"path": "x.txt", "content": "x"}),
        Reply.tool_call("bash", {"command": "ls"}),
        Reply.text("ok"),
    )
    async with Session(make_remote(profile="readonly")) as session:
        await session.run(prompt="try to write")
        touch, write, ls = (_results(server, i)[-1] for i in range(1, 4))
        assert "refused" in touch
        assert "disabled" in write
        assert "made-by-bash" not in ls and "x.txt" not in ls
        offered = {t["function"]["name"] for t in server.chat_requests[0].tools}
        assert "write" not in offered and "edit" not in offered
        (sandbox,) = _live(fake_daytona)
        assert sandbox.network_block_all


async def test_cancel_stops_the_remote_command(
    server: ScriptedServer, fake_daytona: FakeDaytona, make_remote: Callable[..., Agent]
) -> None:
    server.add(Reply.tool_call("bash", {"command": "sleep 300"}), Reply.text("never"))
    async with Session(make_remote()) as session:
        events: list[AgentEvent] = []
        with trio.move_on_after(3):
            await session.run(prompt="wait", on_event=events.append)
        assert any(e.type == "tool_start" for e in events)
        (sandbox,) = _live(fake_daytona)
        with trio.fail_after(5):
            # Polling the fake's bookkeeping: no event announces a process's exit.
            while sandbox.running_pids:  # noqa: ASYNC110
                await trio.sleep(0.05)


async def test_supervisor_shutdown_deletes_every_sandbox(
    server: ScriptedServer, fake_daytona: FakeDaytona, make_remote: Callable[..., Agent]
) -> None:
    for _ in range(2):
        server.add(Reply.tool_call("bash", {"command": "echo hi"}), Reply.text("ok"))
    async with open_supervisor() as supervisor:
        for _ in range(2):
            session = await supervisor.start_session(make_remote())
            await session.run(prompt="hi")
        assert len(_live(fake_daytona)) == 2
    assert _live(fake_daytona) == []


async def test_the_sandbox_survives_runs_and_a_close_deletes_it(
    server: ScriptedServer, fake_daytona: FakeDaytona, make_remote: Callable[..., Agent]
) -> None:
    server.add(
        Reply.tool_call("write", {"path": "keep.txt", "content": "kept"}),
        Reply.text("one"),
        Reply.tool_call("read", {"path": "keep.txt"}),
        Reply.text("two"),
    )
    session = Session(make_remote())
    await session.run(prompt="one")
    await session.run(prompt="two")
    assert "kept" in _results(server, 3)[-1]
    assert len(fake_daytona.sandboxes) == 1
    await session.close()  # returns once the sandbox is deleted
    assert _live(fake_daytona) == []


async def test_failures_end_the_run_naming_what_failed(
    server: ScriptedServer, fake_daytona: FakeDaytona, make_remote: Callable[..., Agent]
) -> None:
    # A quota error when the sandbox is made.
    fake_daytona.fail_next(429, "sandbox quota exceeded")
    # No final text is scripted: the run must end after the failed call.
    server.add(Reply.tool_call("bash", {"command": "echo hi"}))
    result = await Session(make_remote()).run(prompt="go")
    assert result.status == "error"
    assert "creating a Daytona sandbox" in (result.error or "")
    assert "quota" in (result.error or "")
    # No API key at all.
    no_key = make_remote(backend=DaytonaBackend(api_url=fake_daytona.api_url))
    server.add(Reply.tool_call("bash", {"command": "echo hi"}))
    saved = os.environ.pop("DAYTONA_API_KEY", None)
    try:
        result = await Session(no_key).run(prompt="go")
    finally:
        if saved is not None:
            os.environ["DAYTONA_API_KEY"] = saved
    assert result.status == "error" and "DAYTONA_API_KEY" in (result.error or "")
    # The sandbox vanishes mid-session.
    server.add(
        Reply.tool_call("bash", {"command": "echo first"}),
        Reply.text("ok"),
        Reply.tool_call("bash", {"command": "echo second"}),
    )
    session = Session(make_remote())
    assert (await session.run(prompt="first")).status == "completed"
    (sandbox,) = _live(fake_daytona)
    fake_daytona.vanish(sandbox.id)
    result = await session.run(prompt="second")
    assert result.status == "error" and f"sandbox {sandbox.id}" in (result.error or "")


def test_backend_in_yaml(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("backend:\n  type: daytona\n  image: python:3.12\n  cpu: 2\n")
    agent = Agent(AgentConfig.from_file(path))
    assert agent.backend == DaytonaBackend(image="python:3.12", cpu=2)
    assert {t.name for t in agent.registry} >= {"bash", "read", "write"}
    written = AgentConfig(backend=DaytonaBackend(api_key="secret-key", image="x")).to_dict()
    assert written["backend"] == {"type": "daytona", "image": "x", **_defaults()}
    assert "secret-key" not in str(written)


def _defaults() -> dict[str, Any]:
    return {"auto_stop_interval": 15, "auto_delete_interval": 30}


_ORPHAN = """
import sys, trio
from rho_actors import Agent, AgentConfig, DaytonaBackend
from rho_actors._daytona import RemoteSandbox
async def main():
    backend = DaytonaBackend(api_key=sys.argv[1], api_url=sys.argv[2], target="local")
    sandbox = RemoteSandbox(backend, "orphan-session")
    await sandbox.ensure()
    print("READY", flush=True)
    await trio.sleep_forever()
trio.run(main)
"""


async def test_sweep_removes_what_a_killed_host_left(fake_daytona: FakeDaytona) -> None:
    child = await trio.lowlevel.open_process(
        [sys.executable, "-c", _ORPHAN, fake_daytona.api_key, fake_daytona.api_url],
        stdout=subprocess.PIPE,
    )
    assert child.stdout is not None
    with trio.fail_after(30):
        assert b"READY" in await child.stdout.receive_some(100)
    backend = DaytonaBackend(
        api_key=fake_daytona.api_key, api_url=fake_daytona.api_url, target="local"
    )
    assert await sweep_sandboxes(backend) == []  # its owner still lives
    child.send_signal(signal.SIGKILL)
    await child.wait()
    await child.stdout.aclose()
    (orphan,) = _live(fake_daytona)
    assert await sweep_sandboxes(backend) == [orphan.id]
    assert _live(fake_daytona) == []


async def test_an_unreachable_api_is_a_clear_error(
    server: ScriptedServer, make_remote: Callable[..., Agent]
) -> None:
    closed = DaytonaBackend(api_key="k", api_url="http://127.0.0.1:9/api", target="local")
    server.add(Reply.tool_call("bash", {"command": "echo hi"}))
    with trio.fail_after(60):
        result = await Session(make_remote(backend=closed)).run(prompt="go")
    assert result.status == "error"
    assert "creating a Daytona sandbox" in (result.error or "")


async def test_cli_lists_sandboxes_by_label(
    server: ScriptedServer, fake_daytona: FakeDaytona, make_remote: Callable[..., Agent]
) -> None:
    server.add(Reply.tool_call("bash", {"command": "echo hi"}), Reply.text("ok"))
    session = Session(make_remote())
    await session.run(prompt="hi")
    env = {
        **os.environ,
        "DAYTONA_API_KEY": fake_daytona.api_key,
        "DAYTONA_API_URL": fake_daytona.api_url,
        "DAYTONA_TARGET": "local",
    }
    listed = await trio.run_process(
        [sys.executable, "-m", "rho_actors", "sandboxes", "list", "--json"],
        capture_stdout=True,
        env=env,
    )
    (entry,) = json.loads(listed.stdout)
    assert entry["session"] == session.id and entry["orphaned"] is False
    await session.close()


async def test_a_restart_keeps_the_sandbox_and_giving_up_deletes_it(
    server: ScriptedServer, fake_daytona: FakeDaytona, make_remote: Callable[..., Agent]
) -> None:
    async with open_supervisor() as supervisor:
        # A permanent session: the restart keeps its sandbox (and its files).
        kept = await supervisor.start_session(make_remote())
        server.add(Reply.tool_call("write", {"path": "a.txt", "content": "A"}), Reply.text("ok"))
        await kept.run(prompt="write")
        crash_next_run(kept, RuntimeError("bug in the actor"))
        with pytest.raises(ActorCrashed):
            await kept.run(prompt="crash")
        server.add(Reply.tool_call("read", {"path": "a.txt"}), Reply.text("ok"))
        await kept.run(prompt="read")
        assert "A" in _results(server, len(server.chat_requests) - 1)[-1]
        assert len(_live(fake_daytona)) == 1
        # A temporary session is not restarted: its sandbox goes with it.
        gone = await supervisor.start_session(make_remote(), restart="temporary")
        server.add(Reply.tool_call("bash", {"command": "echo hi"}), Reply.text("ok"))
        await gone.run(prompt="hi")
        assert len(_live(fake_daytona)) == 2
        crash_next_run(gone, RuntimeError("boom"))
        with pytest.raises(ActorCrashed):
            await gone.run(prompt="crash")
        with trio.fail_after(10):
            # Deleted by the Sandboxes actor in its own task: poll its effect.
            while len(_live(fake_daytona)) != 1:  # noqa: ASYNC110
                await trio.sleep(0.05)


async def test_upload_puts_a_local_file_in_the_sandbox(
    fake_daytona: FakeDaytona, make_remote: Callable[..., Agent], tmp_path: Path
) -> None:
    local = tmp_path / "data.csv"
    local.write_text("a,b\n1,2\n")
    async with Session(make_remote()) as session:
        where = await session.upload(local, "inputs/data.csv")
        assert where.endswith("inputs/data.csv")
        (sandbox,) = _live(fake_daytona)
        assert "data.csv" in _names_under(sandbox.root)
