"""Event streams, monitors and refs: how other tasks watch and address a session.

They reach the session only through :class:`Addressable`, the few things a
stream, a monitor or a ref needs of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import trio

from .._actor import Mailbox, NoPublicConstructor, Reply, ask
from .._errors import MailboxClosed, RhoError
from .._events import AgentEvent
from .._messages import SessionMessage

# Events buffered per event stream before a slow reader is cut off.
EVENT_STREAM_CAPACITY = 1024

T = TypeVar("T")


class Addressable(Protocol):
    """What streams, monitors and refs use of a session."""

    _streams: list[EventStream] | None
    _monitors: list[SessionMonitor] | None
    _hibernating: bool
    _mailbox: Mailbox[SessionMessage] | None
    _services: Any
    _supervisor: Any

    @property
    def id(self) -> str: ...

    async def wake(self) -> None: ...


class EventStreamOverflow(RhoError):
    """An event stream's reader fell too far behind and was disconnected."""


class EventStream(metaclass=NoPublicConstructor):
    """``async for event in session.events()``: every event of every later run."""

    def __init__(self, session: Addressable, capacity: int) -> None:
        self._send, self._receive = trio.open_memory_channel[AgentEvent](capacity)
        self._session = session
        self.overflowed = False
        if session._streams is None:
            session._streams = []
        session._streams.append(self)

    def _offer(self, event: AgentEvent) -> bool:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.overflowed = True
            self._send.close()
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> AgentEvent:
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            if self.overflowed:
                raise EventStreamOverflow(
                    f"event stream overflowed ({EVENT_STREAM_CAPACITY} events unread)",
                    session_id=self._session.id,
                ) from None
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        self._send.close()
        self._receive.close()
        streams = self._session._streams
        if streams is not None:
            with contextlib.suppress(ValueError):
                streams.remove(self)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class SessionMonitor(metaclass=NoPublicConstructor):
    """Fires once when a session's actor stops for good (not on restart or hibernation).

    ``reason`` is ``"stopped"``, ``"shut down"``, ``"terminated"`` or
    ``"failed: ..."``.
    """

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = trio.Event()
        self.reason: str | None = None

    def _fire(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
            self._event.set()

    async def wait(self) -> str:
        await self._event.wait()
        assert self.reason is not None
        return self.reason


class SessionRef(metaclass=NoPublicConstructor):
    """A session as an actor address: cast, call with a deadline, monitor.

    ``send`` and ``ask`` wake a hibernated session. Bound an ``ask`` with
    ``trio.fail_after``: the request carries its own reply channel, so a
    caller that gives up leaves nothing behind.
    """

    __slots__ = ("_session",)

    def __init__(self, session: Addressable) -> None:
        self._session = session

    @property
    def id(self) -> str:
        return self._session.id

    async def _mailbox(self, what: str) -> Mailbox[SessionMessage]:
        session = self._session
        if session._hibernating:
            await session.wake()
        if session._mailbox is None or session._services is None:
            raise MailboxClosed(
                "the session has no running actor (start it under a supervisor)",
                session_id=session.id,
                operation=what,
            )
        return session._mailbox

    async def send(self, message: SessionMessage) -> None:
        """Cast: queue a message, do not wait for its effect."""
        mailbox = await self._mailbox("send")
        await mailbox.put(message, what="send", session_id=self.id)

    async def ask(self, make: Callable[[Reply[T]], SessionMessage]) -> T:
        """Call: send ``make(reply)`` and wait for the answer."""
        mailbox = await self._mailbox("ask")
        return await ask(mailbox, make, what="ask", session_id=self.id)

    def monitor(self) -> SessionMonitor:
        """A monitor that fires when the actor stops for good."""
        session = self._session
        monitor = SessionMonitor._create()
        if session._supervisor is None and session._services is None:
            monitor._fire("stopped")
            return monitor
        if session._monitors is None:
            session._monitors = []
        session._monitors.append(monitor)
        return monitor
