"""Profiles persist exactly (issue 13, class "resume changes the profile")."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from rho_actors import Agent, PermissionProfile, SessionStore, load_profile
from rho_actors.testing import Reply, ScriptedServer

CAREFUL = PermissionProfile(
    name="careful",
    shell="restricted",
    file_write="off",
    network=False,
    tools=frozenset({"read", "grep", "bash"}),
    max_output_chars=4_000,
)


async def test_a_custom_profile_comes_back_exactly(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """The stored config holds the whole profile; recovery rebuilds it field for field."""
    server.default = lambda request: Reply.text("ok")
    session = store.create_session(make_agent(profile=CAREFUL))
    assert (await session.run("hello")).status == "completed"
    rebuilt = store.agent_for(session.id)
    assert rebuilt.profile == CAREFUL
    assert not rebuilt.profile.allows_tool("write")


async def test_a_stored_builtin_is_never_widened_on_resume(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """A session that ran under readonly as it was then keeps that readonly, even when
    resumed with an agent whose readonly is wider (a changed built-in)."""
    server.default = lambda request: Reply.text("ok")
    then = attrs.evolve(load_profile("readonly"), shell="off")  # readonly, as it once was
    session = store.create_session(make_agent(profile=then))
    assert (await session.run("hello")).status == "completed"

    resumed = store.resume(session.id, make_agent(profile="readonly"))
    assert resumed.profile == then and resumed.tool("bash") is None
    # The control: a session stored under today's readonly resumes with it, shell and all.
    today = store.create_session(make_agent(profile="readonly"))
    assert (await today.run("hello")).status == "completed"
    assert store.resume(today.id, make_agent(profile="readonly")).tool("bash") is not None
