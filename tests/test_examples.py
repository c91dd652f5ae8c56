"""Every program in examples/ runs, offline, as a user would run it (so none can rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
EXPECTED = {
    "approvals.py": "process 2: completed: The report is written.",
    "custom_tool.py": "the tool returned 4; the answer: There are 4 distinct words.",
    "delegation.py": "The child found two failed services",
    "fanout.py": "all completed",
    "mcp_tools.py": "19 + 23 = 42",
    "quickstart.py": "completed - The notes say deploys happen on Tuesdays.",
    "runtime_api.py": "dispatch_prompt: completed - looked into: analyze the logs",
    "structured_output.py": "completed: Ticket(title='Login fails', priority='high'",
    "supervisor.py": "50 sessions persisted",
    "web_service.py": "job policy: re-attached after event",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert EXPECTED[name] in done.stdout


def test_every_example_is_tested() -> None:
    programs = {p.name for p in EXAMPLES.glob("*.py") if not p.name.endswith("_server.py")}
    assert programs == set(EXPECTED)
