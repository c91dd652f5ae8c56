"""The read tool cannot be held or blown up by the file it reads (issue 13, class
"denial of service")."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import trio

from rho_actors import ToolContext, load_profile
from rho_actors.tools import ReadTool


def _ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(session_id="s", call_id="c", working_dir=tmp_path)


async def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    """Reading a FIFO nobody writes to returns an error instead of waiting forever."""
    os.mkfifo(tmp_path / "pipe")
    tool = ReadTool(load_profile("readonly"))
    with trio.fail_after(5):
        output = await tool.handle({"path": "pipe"}, _ctx(tmp_path))
    assert output.is_error and "not a regular file" in output.content


async def test_a_huge_single_line_costs_a_window_of_memory(tmp_path: Path) -> None:
    """A 64 MB file of one line is shown truncated, with its length, in bounded memory."""
    big = tmp_path / "one-line.txt"
    with big.open("wb") as f:
        for _ in range(64):
            f.write(b"x" * (1 << 20))
        f.write(b"\nsecond line\n")
    tool = ReadTool(load_profile("readonly"))
    tracemalloc.start()
    try:
        output = await tool.handle({"path": "one-line.txt"}, _ctx(tmp_path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not output.is_error
    assert f"[line truncated, {64 << 20} bytes]" in output.content
    assert "second line" in output.content and output.metadata["total_lines"] == 2
    assert peak < 8 << 20, f"peak {peak} bytes"


async def test_regular_files_still_read(tmp_path: Path) -> None:
    """The control: an ordinary file reads as numbered lines."""
    (tmp_path / "notes.txt").write_text("alpha\nbeta\n")
    output = await ReadTool(load_profile("readonly")).handle({"path": "notes.txt"}, _ctx(tmp_path))
    assert "1\talpha" in output.content and "2\tbeta" in output.content
