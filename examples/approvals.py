"""Approvals across processes, offline: a run pauses for approval in one process,
and another process approves it and finishes the run.

The first part runs a session whose ``write`` call needs approval
(``auto_approve=False``): the run returns ``paused`` and the process ends.
Then a second process (this file again, with ``--approve``) resumes the
session from the store, approves the call and resumes the run.
Run: ``python examples/approvals.py``
"""

from __future__ import annotations

import subprocess
import sys
import tempfile

import trio

from rho_actors import Agent, AgentConfig, SessionStore
from rho_actors.testing import Reply, open_scripted_server


def agent(base_url: str, work: str) -> Agent:
    return Agent(
        AgentConfig(
            base_url=base_url,
            model="scripted",
            working_dir=work,
            profile="developer",  # writes need approval under "dangerous"
            auto_approve=False,
        )
    )


async def first(work: str) -> None:
    async with open_scripted_server() as model:
        model.add(Reply.tool_call("write", {"path": "report.md", "content": "# Report\n"}, id="w1"))
        session = SessionStore(f"{work}/sessions").create_session(agent(model.base_url, work))
        result = await session.run("Write the report.")
        print(f"process 1: {result.status}, waiting for {result.pending_approvals[0].tool_name}")
        await trio.Path(work, "session-id").write_text(session.id)


async def second(work: str) -> None:
    async with open_scripted_server() as model:
        model.add(Reply.text("The report is written."))
        session_id = await trio.Path(work, "session-id").read_text()
        session = SessionStore(f"{work}/sessions").resume(session_id, agent(model.base_url, work))
        await session.approve("w1")
        result = await session.resume()
        print(f"process 2: {result.status}: {result.text}")
        report = await trio.Path(work, "report.md").read_text()
        print("report.md:", report.strip())


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--approve":
        trio.run(second, sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as work:
        trio.run(first, work)
        subprocess.run([sys.executable, __file__, "--approve", work], check=True)


if __name__ == "__main__":
    main()
