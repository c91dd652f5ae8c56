"""A readonly agent cannot change anything, whatever the model asks."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from rho_actors import Agent, RunResult, Session
from rho_actors.testing import Reply, ScriptedServer, ToolCallSpec


@pytest.mark.parametrize(
    "call",
    [
        ToolCallSpec(name="write", arguments={"path": "new.txt", "content": "x"}),
        ToolCallSpec(
            name="edit", arguments={"path": "keep.txt", "old_string": "keep", "new_string": "gone"}
        ),
        ToolCallSpec(name="bash", arguments={"command": "rm keep.txt"}),
        ToolCallSpec(name="bash", arguments={"command": "echo gone > keep.txt"}),
        ToolCallSpec(name="bash", arguments={"command": "ls $(rm keep.txt)"}),
        ToolCallSpec(name="bash", arguments={"command": "cat keep.txt | tee keep.txt"}),
        ToolCallSpec(name="bash", arguments={"command": "find . -delete"}),
        ToolCallSpec(name="bash", arguments={"command": 'python3 -c \'open("keep.txt","w")\''}),
        ToolCallSpec(name="read", arguments={"path": "../outside.txt"}),
    ],
    ids=lambda c: f"{c.name}:{str(c.arguments)[:40]}",
)
async def test_readonly_refuses_changes(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    tmp_path: Path,
    call: ToolCallSpec,
) -> None:
    """Every attempt to modify files (or escape the working dir) is refused and nothing changes."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("keep")
    (tmp_path / "outside.txt").write_text("secret")
    before = sorted((p.name, p.read_text()) for p in work.iterdir())
    server.add(Reply.tool_calls([call]), Reply.text("ok"))
    result = await Session(make_agent(profile="readonly", working_dir=str(work))).run(prompt="go")
    assert result.status == "completed"
    end = next(e for e in result.events if e.type == "tool_end")
    assert end.tool_metadata is not None
    assert end.tool_metadata["is_error"], end.tool_result
    assert "secret" not in (end.tool_result or "")
    assert sorted((p.name, p.read_text()) for p in work.iterdir()) == before


async def test_readonly_can_still_read(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """Reading inside the working dir works under readonly."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("alpha\nbeta\n")
    server.add(
        Reply.tool_calls(
            [
                ToolCallSpec(name="read", arguments={"path": "notes.txt"}),
                ToolCallSpec(name="bash", arguments={"command": "grep -c a notes.txt"}),
            ]
        ),
        Reply.text("read it"),
    )
    result = await Session(make_agent(profile="readonly", working_dir=str(work))).run(prompt="go")
    outputs = [e.tool_result or "" for e in result.events if e.type == "tool_end"]
    assert "alpha" in outputs[0] and outputs[1].strip().startswith("2")


@pytest.mark.skipif(sys.platform != "linux", reason="process-group checks use /proc")
async def test_cancel_kills_a_running_bash_tree(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """Cancelling a run inside `bash` kills the command's whole process group."""
    marker = tmp_path / "pids"
    command = f"sleep 30 & echo $! > {marker}; sleep 30"
    server.add(Reply.tool_call("bash", {"command": command}))
    session = Session(make_agent(profile="unrestricted", working_dir=str(tmp_path)))
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await session.run(prompt="go"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        with trio.fail_after(10):
            await _poll(lambda: marker.exists() and bool(marker.read_text().strip()))
        await session.cancel("enough")
    assert results[0].status == "cancelled"
    background = int(marker.read_text())
    with trio.fail_after(5):
        await _poll(lambda: not _alive(background))


async def _poll(done: Callable[[], bool]) -> None:
    """Wait for a condition outside this process (files, other processes)."""
    while not done():  # noqa: ASYNC110 - nothing in-process to wait on
        await trio.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
