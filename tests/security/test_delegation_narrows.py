"""A delegated child is a restriction of its parent (issue 13, class "delegation escalates")."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from rho_actors import Agent, PermissionProfile, Session, load_profile
from rho_actors.testing import Reply, ScriptedServer

NARROW = PermissionProfile(
    name="narrow",
    shell="off",
    file_write="off",
    sandbox="required",
    network=False,
    tools=frozenset({"read", "delegate"}),
    max_output_chars=2_000,
)


def test_restricted_to_takes_the_stricter_side_of_every_dimension() -> None:
    """readonly within a shell-less, tool-limited parent has no shell and those tools only."""
    readonly = load_profile("readonly")
    child = readonly.restricted_to(NARROW)
    assert child.shell == "off" and child.file_write == "off"
    assert child.sandbox == "required" and not child.network
    assert child.tools == frozenset({"read", "delegate"})
    assert child.max_output_chars == 2_000 and child.confine_to_working_dir
    assert child.name == "readonly-within-narrow"
    assert not child.allows_tool("bash") and not child.allows_tool("grep")
    # Within developer, readonly keeps all its limits and takes developer's
    # approvals (a call waits if either profile would make it wait).
    within = readonly.restricted_to(load_profile("developer"))
    assert attrs.evolve(within, name="readonly", approval="none") == readonly
    assert within.approval == "dangerous"
    # Within itself, a profile is unchanged.
    assert readonly.restricted_to(readonly) is readonly
    # The unrestricted control: an unrestricted child within developer loses
    # nothing developer forbids, and keeps what both allow.
    wide = load_profile("unrestricted").restricted_to(load_profile("developer"))
    assert wide.confine_to_working_dir and wide.approval == "dangerous"
    assert set(load_profile("developer").shell_blocklist) <= set(wide.shell_blocklist)


async def test_a_child_asking_for_readonly_gets_no_more_than_its_parent(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """The child's request offers only the tools its narrow parent has."""
    agent = make_agent(profile=NARROW)
    server.add(
        Reply.tool_call("delegate", {"prompt": "look around", "profile": "readonly"}),
        Reply.text("child done"),
        Reply.text("parent done"),
    )
    result = await Session(agent).run("delegate it")
    assert result.status == "completed"
    names = [{t["function"]["name"] for t in r.tools} for r in server.chat_requests]
    parent_tools, child_tools = names[0], names[1]
    assert child_tools <= {"read", "delegate"} and "bash" not in child_tools
    assert parent_tools == {"read", "delegate"}


async def test_an_empty_delegation_starts_no_child(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A blank prompt is a tool error for the model; no child request is made."""
    server.add(Reply.tool_call("delegate", {"prompt": "   "}), Reply.text("ok"))
    result = await Session(make_agent()).run("delegate nothing")
    assert result.status == "completed"
    tool_results = [m["content"] for m in server.chat_requests[-1].messages if m["role"] == "tool"]
    assert "prompt is empty" in tool_results[0]
    assert len(server.chat_requests) == 2
