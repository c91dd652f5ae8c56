"""Mailboxes and replies: the plumbing every actor shares.

Both are built directly on trio's low-level park/reschedule primitives rather
than on memory channels. A memory channel pair (shared state, two endpoint
objects, a deque, two task tables) costs about 1.5 KiB and several
allocations; an actor system creates one mailbox per session and one reply
per request, so that cost is paid ten thousand times for idle sessions and
tens of thousands of times per second by the Store. A :class:`Mailbox` holds
one slot for its single reader and allocates its queue only while messages
are waiting; a :class:`Reply` is one small object shared by the asking and
the answering side.

A request carries its own reply; replies never go into a mailbox, so an actor
can never deadlock waiting for its own answer. Callers bound their wait with a
cancel scope (``trio.fail_after``) around :func:`ask`. If an actor drops a
request without answering (it stopped or crashed), the caller gets
:class:`ActorCrashed` rather than waiting forever.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import outcome
import trio
from trio.lowlevel import (
    Abort,
    ParkingLot,
    RaiseCancelT,
    Task,
    cancel_shielded_checkpoint,
    checkpoint_if_cancelled,
    current_task,
    reschedule,
    wait_task_rescheduled,
)

from ._errors import ActorCrashed, MailboxClosed

T = TypeVar("T")
M = TypeVar("M")


class NoPublicConstructor(type):
    """A metaclass for classes that only a factory may build.

    ``Supervisor(...)`` raises ``TypeError``: supervisors come from
    ``open_supervisor`` (which owns their lifetime), refs from
    ``session.ref``, streams from ``session.events()``. The factory calls
    ``cls._create(...)``.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"{cls.__module__}.{cls.__qualname__} has no public constructor "
            "(use the function that provides it)"
        )

    def _create(cls: type[T], *args: Any, **kwargs: Any) -> T:
        instance: T = super().__call__(*args, **kwargs)  # type: ignore[misc]
        return instance


# Messages queued per actor before senders wait. Enough to absorb a burst of
# control messages; small enough that a flood slows its producer.
DEFAULT_MAILBOX_CAPACITY = 64


class _Unset:
    """Marks a reply not settled yet (``None`` is a valid answer)."""


_UNSET: Any = _Unset()


class Reply(Generic[T]):
    """A one-shot answer: the actor settles it once, the caller awaits it once.

    Settling is synchronous and never fails, so an actor can answer from
    anywhere (including ``finally`` blocks) without a checkpoint. Settling a
    second time is ignored.
    """

    __slots__ = ("_abandoned", "_dropped", "_error", "_value", "_waiter")

    def __init__(self) -> None:
        self._value: T = _UNSET
        self._error: BaseException | None = None
        self._dropped = False
        self._waiter: Task | None = None
        self._abandoned = False

    @property
    def settled(self) -> bool:
        return self._value is not _UNSET or self._error is not None or self._dropped

    def send(self, value: T) -> None:
        if not self.settled:
            self._value = value
            self._wake()

    def fail(self, error: BaseException) -> None:
        if not self.settled:
            self._error = error
            self._wake()

    def drop(self) -> None:
        """Give up on the request: the caller sees :class:`ActorCrashed`."""
        if not self.settled:
            self._dropped = True
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            reschedule(waiter)

    @property
    def abandoned(self) -> bool:
        """True once the caller stopped waiting (cancelled or timed out)."""
        return self._abandoned

    def _abort(self, raise_cancel: RaiseCancelT) -> Abort:
        self._waiter = None
        self._abandoned = True
        return Abort.SUCCEEDED

    async def wait(
        self,
        *,
        what: str,
        session_id: str | None = None,
        dropped: str = "the actor stopped before answering",
    ) -> T:
        """The answer; cancelling the wait marks the request abandoned.

        ``dropped`` is the :class:`ActorCrashed` message if the actor gave
        up on the request.
        """
        if not self.settled:
            self._waiter = current_task()
            await wait_task_rescheduled(self._abort)
        else:
            try:
                await trio.lowlevel.checkpoint()
            except BaseException:
                self._abandoned = True
                raise
        if self._error is not None:
            raise self._error
        if self._dropped:
            raise ActorCrashed(dropped, session_id=session_id, operation=what)
        return self._value


class Mailbox(Generic[M]):
    """A bounded queue of messages for one actor (backpressure by design).

    One task reads at a time (the actor). Senders wait while it is full.
    After :meth:`close`, sends fail with :class:`MailboxClosed` and the
    reader gets the queued messages, then :class:`trio.EndOfChannel`.
    """

    __slots__ = ("_capacity", "_closed", "_queue", "_reader", "_senders")

    def __init__(self, capacity: int = DEFAULT_MAILBOX_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._closed = False
        # Allocated only while messages wait: most mailboxes are empty.
        self._queue: deque[M] | None = None
        self._reader: Task | None = None
        self._senders: ParkingLot | None = None

    def __len__(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def _offer(self, message: M) -> bool:
        """Deliver or queue ``message`` if there is room (the mailbox is open)."""
        reader = self._reader
        if reader is not None:
            # A waiting reader implies an empty queue: hand it over directly.
            self._reader = None
            reschedule(reader, outcome.Value(message))
            return True
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif len(queue) >= self._capacity:
            return False
        queue.append(message)
        return True

    async def put(self, message: M, *, what: str = "send", session_id: str | None = None) -> None:
        """Queue ``message``, waiting while the mailbox is full.

        Not a schedule point when there is room: the reply the caller then
        waits for is, and skipping the extra yield halves the scheduler
        passes of a request.
        """
        await checkpoint_if_cancelled()
        while True:
            if self._closed:
                raise MailboxClosed(
                    "the actor's mailbox is closed", session_id=session_id, operation=what
                )
            if self._offer(message):
                return
            if self._senders is None:
                self._senders = ParkingLot()
            await self._senders.park()

    def put_nowait(self, message: M) -> bool:
        """Queue without waiting; False if the mailbox is full or closed."""
        return not self._closed and self._offer(message)

    def put_control(self, message: M) -> bool:
        """Queue a control message past the capacity: never waits, never dropped.

        The control channel of an actor: a cancel, an approval decision or a
        reconfiguration must reach the actor even while its mailbox is full
        of prompts, and may come from synchronous code (a token's
        ``cancel()``, cleanup during a cancellation). Unbounded on purpose:
        each is sent once per user action, so the excess over the capacity is
        bounded by the number of such actions in flight. False once closed.
        """
        if self._closed:
            return False
        if not self._offer(message):
            assert self._queue is not None  # full, hence allocated
            self._queue.append(message)
        return True

    def _take(self) -> M:
        queue = self._queue
        assert queue is not None
        message = queue.popleft()
        if not queue:
            self._queue = None
        if self._senders:  # a ParkingLot is true while tasks are parked in it
            self._senders.unpark()
        return message

    def _reader_abort(self, raise_cancel: RaiseCancelT) -> Abort:
        self._reader = None
        return Abort.SUCCEEDED

    async def get(self) -> M:
        """The next message; :class:`trio.EndOfChannel` once closed and empty."""
        await checkpoint_if_cancelled()
        if self._queue:
            queued = self._take()
            await cancel_shielded_checkpoint()
            return queued
        if self._closed:
            await cancel_shielded_checkpoint()
            raise trio.EndOfChannel
        if self._reader is not None:
            raise trio.BusyResourceError("another task is already reading this mailbox")
        self._reader = current_task()
        message: M = await wait_task_rescheduled(self._reader_abort)
        return message

    def get_nowait(self) -> M:
        """The next queued message, or :class:`trio.WouldBlock` (``EndOfChannel`` once closed)."""
        if self._queue:
            return self._take()
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    def close(self) -> None:
        """Stop accepting messages; queued ones can still be read."""
        if self._closed:
            return
        self._closed = True
        reader = self._reader
        if reader is not None:
            self._reader = None
            reschedule(reader, outcome.Error(trio.EndOfChannel()))
        if self._senders is not None:
            self._senders.unpark_all()

    def drain(self) -> list[M]:
        """Take every queued message at once."""
        queue = self._queue
        self._queue = None
        if self._senders is not None:
            self._senders.unpark_all()
        return list(queue) if queue is not None else []


async def ask(
    mailbox: Mailbox[Any],
    make: Callable[[Reply[T]], Any],
    *,
    what: str,
    session_id: str | None = None,
) -> T:
    """Send ``make(reply)`` to ``mailbox`` and wait for the answer."""
    reply: Reply[T] = Reply()
    await mailbox.put(make(reply), what=what, session_id=session_id)
    return await reply.wait(what=what, session_id=session_id)


class RunLimiter:
    """A ``trio.CapacityLimiter`` per trio run, made on first use in that run.

    A limiter belongs to the run that made it, so a module-level one would
    break the second ``trio.run`` of a process (tests, CLIs); this keeps one
    per run under a name.
    """

    __slots__ = ("_size", "_var")

    def __init__(self, name: str, size: int) -> None:
        self._var: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar(name)
        self._size = size

    def get(self) -> trio.CapacityLimiter:
        try:
            return self._var.get()
        except LookupError:
            limiter = trio.CapacityLimiter(self._size)
            self._var.set(limiter)
            return limiter
