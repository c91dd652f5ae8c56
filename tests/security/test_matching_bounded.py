"""Glob and regex matching cannot hold the process (issue 13, class "denial of
service": catastrophic backtracking in glob and in grep's fallback)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import trio

from rho_actors import ToolContext, load_profile
from rho_actors.tools import GlobTool, GrepTool
from rho_actors.tools._globs import compile_glob

READONLY = load_profile("readonly")
EVIL_GLOB = "*a*a*a*a*a*a*a*a*a*a*a*a*b"


def _ctx(work: Path) -> ToolContext:
    return ToolContext(session_id="s", call_id="c", working_dir=work)


def _seconds(match: Callable[[str], object], text: str) -> float:
    started = time.perf_counter()
    match(text)
    return time.perf_counter() - started


def test_glob_matching_is_linear() -> None:
    """A backtracking regex needs time growing like len(name)**stars; the matcher
    does not: on a name where the regex (the control) already takes a visible
    time, the matcher is at least 10 times faster, and a 100 times longer name
    still takes it well under a second."""
    glob = "*a" * 7 + "*b"
    naive = re.compile(glob.replace("*", "[^/]*") + r"\Z").match
    matcher = compile_glob(glob).match
    assert _seconds(naive, "a" * 50) > 10 * _seconds(matcher, "a" * 50)
    assert _seconds(compile_glob(EVIL_GLOB).match, "a" * 5000) < 1.0


async def test_glob_tool_returns_promptly(tmp_path: Path) -> None:
    (tmp_path / ("a" * 200)).write_text("x")
    with trio.fail_after(5):
        out = await GlobTool(READONLY).handle({"pattern": EVIL_GLOB}, _ctx(tmp_path))
    assert "No files match" in out.content


async def test_grep_fallback_is_cancelled_within_a_fraction_of_a_second(tmp_path: Path) -> None:
    """A backtracking regex in the Python fallback runs in a child that a deadline kills."""
    (tmp_path / "line.txt").write_text("a" * 40 + "!\n")
    tool = GrepTool(READONLY, use_ripgrep=False)
    started = trio.current_time()
    with trio.move_on_after(1.5) as scope:
        await tool.handle({"pattern": "(a+)+$"}, _ctx(tmp_path))
    assert scope.cancelled_caught
    assert trio.current_time() - started < 2.5
