"""The supervisor: a nursery that owns session actors and the shared services.

``open_supervisor()`` is the actor layer's entry point for trio programs::

    async with open_supervisor(store=SessionStore("/tmp/sessions")) as sup:
        session = await sup.start_session(agent)
        result = await session.run(prompt="...")

Every session started here shares one Registry actor, one Store actor (with
group commit) and one set of model connection pools. Leaving the block stops
the sessions: each finishes its current message within ``shutdown_grace``
seconds, then anything still running is cancelled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ._actor import Mailbox
from ._errors import RhoError
from ._messages import SessionMessage, Stop
from ._registry import DEFAULT_MAX_SUBPROCESSES
from ._services import Services, open_services
from ._session import Session
from ._store._actor import TelemetrySink

if TYPE_CHECKING:
    from ._agent import Agent
    from ._store._session_store import SessionStore

DEFAULT_SHUTDOWN_GRACE = 5.0


class Supervisor:
    """Owns session actors; see :func:`open_supervisor`."""

    def __init__(
        self, nursery: trio.Nursery, services: Services, store: SessionStore | None
    ) -> None:
        self._nursery = nursery
        self._services = services
        self.store = store
        self.sessions: dict[str, Session] = {}
        self._closing = False
        self._all_stopped = trio.Event()

    @property
    def services(self) -> Services:
        return self._services

    async def start_session(
        self, agent_or_session: Agent | Session, *, session_id: str | None = None
    ) -> Session:
        """Start a session actor under this supervisor and return the session.

        Pass an ``Agent`` to create a new session (persisted if the
        supervisor has a store), or an existing ``Session`` to host it.
        """
        if self._closing:
            raise RhoError("the supervisor is shutting down", operation="start_session")
        if isinstance(agent_or_session, Session):
            session = agent_or_session
        elif self.store is not None:
            session = self.store.create_session(agent_or_session, session_id=session_id)
        else:
            session = Session(agent_or_session, session_id=session_id)
        if (
            session._store is not None
            and self.store is not None
            and session._store.path != self.store.path
        ):
            raise RhoError(
                "the session belongs to another store than the supervisor's",
                session_id=session.id,
                operation="start_session",
            )
        if session.id in self.sessions:
            raise RhoError("session already started", session_id=session.id)
        await self._nursery.start(self._host, session)
        return session

    async def _host(
        self, session: Session, *, task_status: trio.TaskStatus[Mailbox[SessionMessage]]
    ) -> None:
        self.sessions[session.id] = session
        try:
            await session.serve(self._services, task_status=task_status)
        finally:
            self.sessions.pop(session.id, None)
            if not self.sessions:
                self._all_stopped.set()

    async def resume_session(self, session_id: str, agent: Agent) -> Session:
        """Reload a stored session and start it here."""
        if self.store is None:
            raise RhoError("this supervisor has no store", operation="resume_session")
        session = await self.store.aresume(session_id, agent)
        return await self.start_session(session)

    async def stop_session(self, session: Session) -> None:
        """Ask a session to stop after its current message."""
        if session._mailbox is not None and session._services is not None:
            await session._mailbox.put(Stop(), what="stop", session_id=session.id)

    async def _shutdown(self, grace: float) -> None:
        self._closing = True
        for session in list(self.sessions.values()):
            if session._mailbox is not None:
                session._mailbox.put_nowait(Stop(grace=grace))
        if self.sessions:
            with trio.move_on_after(grace):
                await self._all_stopped.wait()


@asynccontextmanager
async def open_supervisor(
    *,
    store: SessionStore | None = None,
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
    telemetry: TelemetrySink | None = None,
    max_subprocesses: int = DEFAULT_MAX_SUBPROCESSES,
) -> AsyncIterator[Supervisor]:
    """Open a supervisor; sessions started on it live until the block ends.

    ``max_subprocesses`` is the global limit on tool subprocesses (bash, rg)
    running at once across every session here; further calls wait.
    """
    backend = store.backend if store is not None else None
    async with (
        open_services(backend, telemetry, max_subprocesses=max_subprocesses) as services,
        trio.open_nursery() as nursery,
    ):
        supervisor = Supervisor(nursery, services, store)
        try:
            yield supervisor
            await supervisor._shutdown(shutdown_grace)
        finally:
            nursery.cancel_scope.cancel(reason="supervisor closed")
