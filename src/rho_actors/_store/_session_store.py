"""``SessionStore``: the seed's handle on persisted sessions.

The seed API is synchronous (``store.list()``, ``store.resume(...)``), so
these methods do blocking file I/O; in async code prefer the ``a``-prefixed
twins (``await store.alist()``), which run it in a worker thread. Writes
never happen here: a session's records go through the Store actor while it
runs.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .._errors import StoreError
from .._state import State
from ._backend import DirectoryBackend, SessionInfo, StoreBackend

if TYPE_CHECKING:
    from .._agent import Agent
    from .._session import Session

SESSIONS_DIR_ENV = "RHO_ACTORS_SESSIONS_DIR"


def default_sessions_dir() -> Path:
    """``$RHO_ACTORS_SESSIONS_DIR``, else ``$XDG_CONFIG_HOME/rho-actors/sessions``."""
    explicit = os.environ.get(SESSIONS_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "rho-actors" / "sessions"


class SessionStore:
    """Creates, lists and resumes persisted sessions."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        backend: StoreBackend | None = None,
        fsync: bool = False,
    ) -> None:
        if backend is not None and path is not None:
            raise TypeError("pass a path or a backend, not both")
        self.path = Path(path) if path is not None else default_sessions_dir()
        self.backend: StoreBackend = backend or DirectoryBackend(self.path, fsync=fsync)

    def create_session(self, agent: Agent, *, session_id: str | None = None) -> Session:
        """A new session whose runs are persisted here (files appear on its first run)."""
        from .._session import Session

        if session_id is not None and self.backend.exists(session_id):
            raise StoreError("session already exists", session_id=session_id, operation="create")
        return Session(agent, session_id=session_id, store=self)

    def resume(self, session_id: str, agent: Agent) -> Session:
        """Reload a session from its trace (blocking; see :meth:`aresume`)."""
        from .._session import Session

        envelopes = self.backend.load(session_id)
        state = State.replay(envelopes, session_id)
        session = Session(agent, state=state, store=self)
        session._adopt_stored(self.backend.read_meta(session_id))
        return session

    async def aresume(self, session_id: str, agent: Agent) -> Session:
        return await trio.to_thread.run_sync(self.resume, session_id, agent)

    def load_state(self, session_id: str) -> State:
        return State.replay(self.backend.load(session_id), session_id)

    def list(self) -> list[SessionInfo]:
        """Every stored session, oldest first (blocking; see :meth:`alist`)."""
        return self.backend.list()

    async def alist(self) -> builtins.list[SessionInfo]:
        return await trio.to_thread.run_sync(self.backend.list)

    def get_latest_id(self) -> str | None:
        """The id of the most recently created session, or None."""
        infos = self.list()
        return infos[-1].id if infos else None

    def __repr__(self) -> str:
        return f"SessionStore({str(self.path)!r})"
