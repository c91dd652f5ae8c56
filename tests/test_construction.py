"""Classes that only a factory may build cannot be constructed directly."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rho_actors import (
    Agent,
    EventStream,
    Session,
    SessionMonitor,
    SessionRef,
    Supervisor,
    open_supervisor,
)


@pytest.mark.parametrize("cls", [Supervisor, SessionRef, EventStream, SessionMonitor])
def test_no_public_constructor(cls: type) -> None:
    """Supervisor, refs, streams and monitors come from their factories only."""
    with pytest.raises(TypeError, match="no public constructor"):
        cls()


async def test_the_factories_build_them(make_agent: Callable[..., Agent]) -> None:
    """open_supervisor, session.ref, ref.monitor() and session.events() are the ways in."""
    async with open_supervisor() as sup:
        assert isinstance(sup, Supervisor)
        session = await sup.start_session(make_agent())
        assert isinstance(session.ref, SessionRef)
        assert isinstance(session.ref.monitor(), SessionMonitor)
        async with session.events() as stream:
            assert isinstance(stream, EventStream)
    assert isinstance(Session(make_agent()).events(), EventStream)
