"""``SessionStore``: the seed's handle on persisted sessions.

The Store actor is the only door to a backend. While a supervisor (or the
ambient host) runs a Store actor for this store in the current ``trio.run``,
the ``a``-prefixed methods (``await store.alist()``, ``aresume``,
``arequest_cancel`` ...) are requests to that actor. Otherwise, and for the
seed's synchronous methods (``store.list()``, ``store.resume(...)``), the
call uses the backend in the calling thread while holding the store's lock,
which the Store actor also holds around each of its batches: a backend never
sees two callers at once, whichever path they take. In async code prefer
the ``a`` methods: the synchronous ones block the event loop.
"""

from __future__ import annotations

import builtins
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import trio
import yaml

from . import _records as r
from ._agent import Agent
from ._config import AgentConfig, user_path
from ._errors import ConfigError, StoreError
from ._profiles import PermissionProfile, load_profile
from ._session import Session
from ._state import State
from ._store._actor import StoreRef
from ._store._backend import DirectoryBackend, SessionInfo, StoreBackend
from ._store._sql import is_sql_location, open_sql_backend

SESSIONS_DIR_ENV = "RHO_ACTORS_SESSIONS_DIR"
# With LISTEN/NOTIFY, the longest wait before looking for control requests anyway.
LISTEN_BACKSTOP = 1.0
# A store location (directory, sqlite:PATH, postgresql://...) used when none is given.
STORE_ENV = "RHO_ACTORS_STORE"

T = TypeVar("T")


def default_sessions_dir() -> Path:
    """``$RHO_ACTORS_SESSIONS_DIR``, else ``$XDG_CONFIG_HOME/rho-actors/sessions``."""
    return user_path(SESSIONS_DIR_ENV, "sessions")


class SessionStore:
    """Creates, lists and resumes persisted sessions.

    ``path`` is a directory of JSONL session folders (the default), or a
    database: ``sqlite:PATH`` for one SQLite file, ``postgresql://...`` for
    PostgreSQL. Without one, ``$RHO_ACTORS_STORE`` is used, else the
    sessions directory (``$RHO_ACTORS_SESSIONS_DIR``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        backend: StoreBackend | None = None,
        fsync: bool = False,
    ) -> None:
        if backend is not None and path is not None:
            raise TypeError("pass a path or a backend, not both")
        if path is None and backend is None:
            path = os.environ.get(STORE_ENV) or None
        if isinstance(path, str) and is_sql_location(path):
            backend = open_sql_backend(path)
            path = None
        if path is not None:
            self.path = Path(path).expanduser()
        elif isinstance(backend, DirectoryBackend):
            self.path = backend.root
        elif backend is not None:
            self.path = Path(getattr(backend, "location", "store"))
        else:
            self.path = default_sessions_dir()
        self.backend: StoreBackend = backend or DirectoryBackend(self.path, fsync=fsync)
        # Where the store is, as a person reads it (a directory, a database
        # file, a PostgreSQL URL without its password).
        self.location = str(getattr(self.backend, "location", self.path))
        # Held by every user of the backend: the Store actor around each
        # batch, a synchronous call for its duration.
        self.lock = threading.Lock()
        # Store actors serving this store now, with their trio run.
        self._actors: list[tuple[trio.lowlevel.TrioToken, StoreRef]] = []

    # --- the door ---------------------------------------------------------------

    def _attach(self, ref: StoreRef) -> None:
        """A Store actor for this store started (called by its owner)."""
        self._actors.append((trio.lowlevel.current_trio_token(), ref))

    def _detach(self, ref: StoreRef) -> None:
        self._actors = [(token, r) for token, r in self._actors if r is not ref]

    def _actor(self) -> StoreRef | None:
        """A Store actor for this store in the current trio run, if one is serving."""
        if not self._actors:
            return None
        try:
            token = trio.lowlevel.current_trio_token()
        except RuntimeError:
            return None
        for owner, ref in self._actors:
            if owner is token:
                return ref
        return None

    def _locked(self, call: Callable[..., T], *args: Any) -> T:
        with self.lock:
            return call(*args)

    async def _in_thread(self, call: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(self._locked, call, *args)

    # --- sessions -----------------------------------------------------------------

    def create_session(self, agent: Agent, *, session_id: str | None = None) -> Session:
        """A new session whose runs are persisted here (files appear on its first run)."""
        if session_id is not None and self._locked(self.backend.exists, session_id):
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
        envelopes = self._locked(self.backend.load, session_id)
        meta = self._locked(self.backend.read_meta, session_id)
        config = self._locked(self.backend.read_config, session_id)
        return self._resumed(session_id, agent, envelopes, meta, config)

    async def aresume(self, session_id: str, agent: Agent) -> Session:
        actor = self._actor()
        if actor is None:
            return await trio.to_thread.run_sync(self.resume, session_id, agent)
        envelopes = await actor.load(session_id)
        meta = await actor.read_meta(session_id)
        config = await actor.read_config(session_id)
        return self._resumed(session_id, agent, envelopes, meta, config)

    def _resumed(
        self,
        session_id: str,
        agent: Agent,
        envelopes: builtins.list[r.Envelope],
        meta: dict[str, Any] | None,
        config: str | None,
    ) -> Session:
        state = State.replay(envelopes, session_id)
        session = Session(agent, state=state, store=self)
        session._adopt_stored(meta)
        stored = self._stored_profile(session_id, config)
        if stored is not None and stored.name == agent.profile.name and stored != agent.profile:
            # The session keeps the exact profile it ran with: a customised
            # one, or a built-in as it was then (never silently widened).
            session.reconfigure_nowait(profile=stored)
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

    def _stored_profile(self, session_id: str, config: str | None) -> PermissionProfile | None:
        """The full profile a session's config.yaml holds (None for a name only)."""
        if config is None:
            return None
        data, where = self._parse_config(session_id, config)
        profile = data.get("profile") if isinstance(data, dict) else None
        if not isinstance(profile, dict):
            return None
        try:
            return load_profile(profile)
        except ConfigError as exc:
            raise StoreError(f"invalid stored profile ({exc})", path=where) from exc

    def load_state(self, session_id: str) -> State:
        """The session's State as its trace has it (blocking; see :meth:`aload_state`)."""
        return State.replay(self._locked(self.backend.load, session_id), session_id)

    async def aload_state(self, session_id: str) -> State:
        actor = self._actor()
        if actor is None:
            return await trio.to_thread.run_sync(self.load_state, session_id)
        return State.replay(await actor.load(session_id), session_id)

    async def arecords(self, session_id: str) -> builtins.list[r.Envelope]:
        """The session's trace records, in order (through the Store actor while one runs)."""
        actor = self._actor()
        if actor is None:
            return await self._in_thread(self.backend.load, session_id)
        return await actor.load(session_id)

    async def aread_meta(self, session_id: str) -> dict[str, Any] | None:
        actor = self._actor()
        if actor is None:
            return await self._in_thread(self.backend.read_meta, session_id)
        return await actor.read_meta(session_id)

    def list(self) -> builtins.list[SessionInfo]:
        """Every stored session, oldest first (blocking; see :meth:`alist`).

        A session whose trace has a run start without a run end, and whose
        process no longer exists, is listed as ``interrupted``. A session that
        cannot be read is listed with status ``corrupt`` and ``error`` naming
        the file and the reason; it never hides the others.
        """
        return self._locked(self.backend.list)

    async def alist(self) -> builtins.list[SessionInfo]:
        actor = self._actor()
        if actor is None:
            return await self._in_thread(self.backend.list)
        return await actor.list()

    def agent_for(self, session_id: str) -> Agent:
        """An Agent built from the session's stored ``config.yaml`` (blocking)."""
        return self._agent_from(session_id, self._locked(self.backend.read_config, session_id))

    async def aagent_for(self, session_id: str) -> Agent:
        actor = self._actor()
        if actor is None:
            text = await self._in_thread(self.backend.read_config, session_id)
        else:
            text = await actor.read_config(session_id)
        return await trio.to_thread.run_sync(self._agent_from, session_id, text)

    def _agent_from(self, session_id: str, text: str | None) -> Agent:
        if text is None:
            raise StoreError("no stored config", session_id=session_id, operation="agent_for")
        data, where = self._parse_config(session_id, text)
        return Agent(AgentConfig.from_dict(data, source=where))

    def _parse_config(self, session_id: str, text: str) -> tuple[Any, str]:
        """A stored config.yaml's data, and the file it came from (for errors)."""
        if isinstance(self.backend, DirectoryBackend):
            where = str(self.path / session_id / "config.yaml")
        else:
            where = f"{self.location} (session {session_id}, config)"
        try:
            return yaml.safe_load(text) or {}, where
        except yaml.YAMLError as exc:
            raise StoreError(f"invalid config ({exc})", path=where, session_id=session_id) from exc

    def request_cancel(
        self, session_id: str, reason: str = "cancelled from another process"
    ) -> None:
        """Ask the process running this session to cancel its run (picked up within a second)."""
        with self.lock:
            if not self.backend.exists(session_id):
                raise StoreError(
                    "no such session", session_id=session_id, operation="request_cancel"
                )
            self.backend.request_cancel(session_id, reason)

    async def arequest_cancel(
        self, session_id: str, reason: str = "cancelled from another process"
    ) -> None:
        actor = self._actor()
        if actor is None:
            await trio.to_thread.run_sync(self.request_cancel, session_id, reason)
        else:
            await actor.request_cancel(session_id, reason)

    async def arequest_approval(
        self, session_id: str, tool_call_id: str, approved: bool, reason: str | None = None
    ) -> None:
        """Send an approval decision to whichever process runs the session."""
        payload = {"tool_call_id": tool_call_id, "approved": approved, "reason": reason}
        await self._request_control(session_id, "approve", payload)

    async def arequest_reconfigure(self, session_id: str, **changes: Any) -> None:
        """Reconfigure the session wherever it runs (``profile`` by name, path or
        mapping, ``working_dir``, ``auto_approve``, ``enable_delegate``)."""
        profile = changes.get("profile")
        if profile is not None and not isinstance(profile, str | Mapping):
            changes["profile"] = profile.to_mapping()  # travels as data
        await self._request_control(session_id, "reconfigure", changes)

    async def _request_control(self, session_id: str, kind: str, payload: Any) -> None:
        def send() -> None:
            if not self.backend.exists(session_id):
                raise StoreError("no such session", session_id=session_id, operation=kind)
            self.backend.request_control(session_id, kind, json.dumps(payload))

        await self._in_thread(send)

    def take_control_requests(
        self, session_ids: Iterable[str]
    ) -> builtins.list[tuple[str, str, Any]]:
        """Control requests for these sessions (session id, kind, decoded payload)."""
        raw = self._locked(self.backend.take_control_requests, list(session_ids))
        return [(sid, kind, json.loads(payload)) for sid, kind, payload in raw]

    async def wait_for_control(self, poll: float) -> None:
        """Return when another process may have sent a control request (a cancel).

        A PostgreSQL store is told at once (LISTEN/NOTIFY, in a worker thread
        with a connection of its own), with a slow poll as the backstop;
        other stores are polled every ``poll`` seconds.
        """
        if not getattr(self.backend, "listens", False):
            await trio.sleep(poll)
            return
        wait = self.backend.wait_for_control  # type: ignore[attr-defined]
        await trio.to_thread.run_sync(wait, LISTEN_BACKSTOP, abandon_on_cancel=True)

    def take_cancel_requests(self) -> dict[str, str]:
        return self._locked(self.backend.take_cancel_requests)

    def get_latest_id(self) -> str | None:
        """The id of the most recently created session, or None."""
        infos = self.list()
        return infos[-1].id if infos else None

    def __repr__(self) -> str:
        return f"SessionStore({self.location!r})"
