"""How a session is hosted, as the session sees it.

A session actor runs under a host: a supervisor the user opened, or the
ambient host of the ``trio.run`` (see ``rho_actors._host``). Both live in
layers above the session, so the session knows them only through the
protocols here, and reaches the ambient host through the one hook that
``rho_actors._host`` installs when the package is imported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from ._errors import RhoError
from ._hooks import AgentHooks
from ._records import Envelope
from ._state import State


class SessionHost(Protocol):
    """A supervisor, as a session hosted by it sees it."""

    hooks: tuple[AgentHooks, ...]

    async def _wake(self, session: Any) -> None:
        """Start a hibernated session's actor again."""
        ...


class SessionStoreHandle(Protocol):
    """A ``SessionStore``, as a session persisted in it sees it (reads only: every
    write goes through the Store actor)."""

    def load_state(self, session_id: str) -> State: ...

    async def aload_state(self, session_id: str) -> State: ...

    async def aread_meta(self, session_id: str) -> dict[str, Any] | None: ...

    async def arecords(self, session_id: str) -> list[Envelope]: ...

    @property
    def location(self) -> str:
        """Where the sessions live (what tells two stores apart)."""
        ...

    @property
    def path(self) -> Path:
        """The store's directory (or database file), for messages."""
        ...


AmbientHosting = Callable[[Any], Awaitable[None]]

_ambient: list[AmbientHosting] = []


def install_ambient_hosting(hosting: AmbientHosting) -> None:
    """Called once by ``rho_actors._host`` when the package is imported."""
    _ambient[:] = [hosting]


async def host_ambiently(session: Any) -> None:
    """Have this ``trio.run``'s ambient host host ``session`` (while it is used)."""
    if not _ambient:
        raise RhoError(
            "no ambient host installed: import rho_actors (not only its submodules)",
            session_id=getattr(session, "id", None),
        )
    await _ambient[0](session)
