"""Every tool gives control back promptly when its call is cancelled (issue 13, "every
tool honours cancellation and deadlines within 100 ms, including blocked opens").

Measured here at 0.2-75 ms; the bound asserted is 300 ms so a loaded CI machine
does not fail it by scheduling noise. A tool that waited for its work (a grace of
2 s, a query to finish, a thread to return) would take seconds.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from rho_actors import ToolContext, ToolHandler, load_profile
from rho_actors.tools import BashTool, GrepTool, SqliteTool

DEV = load_profile("developer")
READONLY = load_profile("readonly")
BOUND = 0.3

CASES: dict[str, tuple[ToolHandler, dict[str, Any]]] = {
    "bash": (BashTool(DEV), {"command": "sleep 30"}),
    "bash ignoring SIGTERM": (BashTool(DEV), {"command": "trap '' TERM; sleep 30"}),
    "bash sandboxed": (BashTool(READONLY), {"command": "sleep 30"}),
    "grep fallback backtracking": (GrepTool(READONLY, use_ripgrep=False), {"pattern": "(a+)+$"}),
    "sqlite endless query": (
        SqliteTool(READONLY),
        {
            "database": "d.db",
            "sql": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
            "SELECT count(*) FROM n",
        },
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_cancelled_call_returns_at_once(name: str, tmp_path: Path) -> None:
    tool, args = CASES[name]
    if name == "bash sandboxed":
        from rho_actors import _sandbox

        if not (await _sandbox.probe_bwrap()).available:
            pytest.skip("bubblewrap does not work here")
    (tmp_path / "line.txt").write_text("a" * 40 + "!\n")
    conn = sqlite3.connect(tmp_path / "d.db")
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    ctx = ToolContext(session_id="s", call_id="c", working_dir=tmp_path)
    cancelled_at = 0.0
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:

            async def cancel_soon() -> None:
                nonlocal cancelled_at
                await trio.sleep(0.7)  # the call is well under way
                cancelled_at = time.perf_counter()
                scope.cancel()

            nursery.start_soon(cancel_soon)
            await tool.handle(args, ctx)
    latency = time.perf_counter() - cancelled_at
    assert scope.cancelled_caught
    assert latency < BOUND, f"{name}: {latency * 1000:.0f} ms"
