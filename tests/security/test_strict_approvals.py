"""Approvals fail closed: only an explicit True approves (issue 13, class "approvals")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rho_actors import Agent, AgentEvent, Session
from rho_actors.testing import Reply, ScriptedServer

NOT_APPROVALS = ["no", "yes", {"approved": False}, {"approved": True}, None, 1, [True], "True"]


async def _attempt_write(
    server: ScriptedServer, agent: Agent, answer: object
) -> tuple[list[AgentEvent], Path]:
    target = Path(agent.working_dir) / "written.txt"
    server.add(
        Reply.tool_call("write", {"path": "written.txt", "content": "x"}),
        Reply.text("done"),
    )
    session = Session(agent)

    def callback(tool: str, args: dict[str, Any]) -> object:
        return answer

    session.approval_callback = callback
    events: list[AgentEvent] = []
    await session.run("write the file", on_event=events.append)
    return events, target


@pytest.mark.parametrize("answer", NOT_APPROVALS, ids=repr)
async def test_anything_but_true_denies(
    server: ScriptedServer, make_agent: Callable[..., Agent], answer: object
) -> None:
    """A callback answering "no", a dict, None, 1... denies, and says what came back."""
    events, target = await _attempt_write(server, make_agent(), answer)
    blocked = [e for e in events if e.type == "tool_blocked"]
    assert len(blocked) == 1 and not target.exists()
    if answer is not False:
        assert "only True approves" in (blocked[0].content or "")
        assert repr(answer)[:20] in (blocked[0].content or "")


async def test_true_approves(server: ScriptedServer, make_agent: Callable[..., Agent]) -> None:
    """The control: the same call with True is approved and the file is written."""
    events, target = await _attempt_write(server, make_agent(), True)
    assert not [e for e in events if e.type == "tool_blocked"] and target.exists()
