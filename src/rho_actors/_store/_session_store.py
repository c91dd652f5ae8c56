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
        if path is not None:
            self.path = Path(path)
        elif isinstance(backend, DirectoryBackend):
            self.path = backend.root
        else:
            self.path = default_sessions_dir()
        self.backend: StoreBackend = backend or DirectoryBackend(self.path, fsync=fsync)

    def create_session(self, agent: Agent, *, session_id: str | None = None) -> Session:
        """A new session whose runs are persisted here (files appear on its first run)."""
        from .._session import Session

        if session_id is not None and self.backend.exists(session_id):
            raise StoreError("session already exists", session_id=session_id, operation="create")
        return Session(agent, session_id=session_id, store=self)

    def resume(self, session_id: str, agent: Agent) -> Session:
        """Reload a session from its trace (blocking; see :meth:`aresume`).

        A session whose process died mid-run comes back ``interrupted``: its
        messages, usage, counters and pending approvals are restored, tool
        calls that already have results are kept, and the ones that never
        finished get a synthetic result, so ``await session.resume()``
        continues the interrupted run from there.
        """
        from .._session import Session

        envelopes = self.backend.load(session_id)
        state = State.replay(envelopes, session_id)
        session = Session(agent, state=state, store=self)
        session._adopt_stored(self.backend.read_meta(session_id))
        if state.status == "running":
            # Recorded through the session's observer: persisted on its next write.
            unanswered = {c.get("id") for c in state.unanswered_tool_calls()}
            pending = {p.tool_call_id for p in state.pending_approvals}
            if unanswered - pending:
                # Calls waiting for approval stay pending; the rest are closed.
                for call in state.unanswered_tool_calls():
                    if call.get("id") not in pending:
                        state.add_tool_result(
                            str(call.get("id")),
                            "[interrupted: the process stopped before this tool call finished]",
                        )
            state.set_status("interrupted")
        return session

    async def aresume(self, session_id: str, agent: Agent) -> Session:
        return await trio.to_thread.run_sync(self.resume, session_id, agent)

    def load_state(self, session_id: str) -> State:
        return State.replay(self.backend.load(session_id), session_id)

    def list(self) -> list[SessionInfo]:
        """Every stored session, oldest first (blocking; see :meth:`alist`).

        A session whose trace has a run start without a run end, and whose
        process no longer exists, is listed as ``interrupted``. A session that
        cannot be read is listed with status ``corrupt`` and ``error`` naming
        the file and the reason; it never hides the others.
        """
        return self.backend.list()

    async def alist(self) -> builtins.list[SessionInfo]:
        return await trio.to_thread.run_sync(self.list)

    def agent_for(self, session_id: str) -> Agent:
        """An Agent built from the session's stored ``config.yaml`` (blocking)."""
        from .._agent import Agent
        from .._config import AgentConfig

        text = self.backend.read_config(session_id)
        if text is None:
            raise StoreError("no stored config", session_id=session_id, operation="agent_for")
        where = str(self.path / session_id / "config.yaml")
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise StoreError(f"invalid config ({exc})", path=where, session_id=session_id) from exc
        return Agent(AgentConfig.from_dict(data, source=where))

    def request_cancel(
        self, session_id: str, reason: str = "cancelled from another process"
    ) -> None:
        """Ask the process running this session to cancel its run (picked up within a second)."""
        if not self.backend.exists(session_id):
            raise StoreError("no such session", session_id=session_id, operation="request_cancel")
        self.backend.request_cancel(session_id, reason)

    def take_cancel_requests(self) -> dict[str, str]:
        return self.backend.take_cancel_requests()

    def get_latest_id(self) -> str | None:
        """The id of the most recently created session, or None."""
        infos = self.list()
        return infos[-1].id if infos else None

    def __repr__(self) -> str:
        return f"SessionStore({str(self.path)!r})"
