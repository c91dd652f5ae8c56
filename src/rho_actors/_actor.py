"""Mailboxes and replies: the plumbing every actor shares.

A request carries its own reply channel (capacity 1); replies never go into a
mailbox, so an actor can never deadlock waiting for its own answer. Callers
bound their wait with a cancel scope (``trio.fail_after``) around :func:`ask`.

If an actor drops a request without answering (it stopped or crashed), it
closes the reply channel and the caller gets :class:`ActorCrashed` rather
than waiting forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import outcome
import trio

from ._errors import ActorCrashed, MailboxClosed

T = TypeVar("T")
M = TypeVar("M")

# Messages queued per actor before senders wait. Enough to absorb a burst of
# control messages; small enough that a flood slows its producer.
DEFAULT_MAILBOX_CAPACITY = 64


@attrs.frozen(slots=True)
class Reply(Generic[T]):
    """The answering end of a request: use it exactly once."""

    _channel: trio.MemorySendChannel[outcome.Outcome[T]]

    def send(self, value: T) -> None:
        self._deliver(outcome.Value(value))

    def fail(self, error: BaseException) -> None:
        self._deliver(outcome.Error(error))

    def _deliver(self, result: outcome.Outcome[T]) -> None:
        try:
            self._channel.send_nowait(result)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
            pass  # the caller went away, or was already answered
        finally:
            self._channel.close()

    def drop(self) -> None:
        """Give up on the request: the caller sees :class:`ActorCrashed`."""
        self._channel.close()

    @property
    def abandoned(self) -> bool:
        """True once the caller stopped waiting (cancelled or timed out)."""
        stats = self._channel.statistics()
        return stats.open_receive_channels == 0


def open_reply(
    type_: type[T] | None = None,
) -> tuple[Reply[T], trio.MemoryReceiveChannel[outcome.Outcome[T]]]:
    send, receive = trio.open_memory_channel[outcome.Outcome[T]](1)
    return Reply(send), receive


async def await_reply(
    receive: trio.MemoryReceiveChannel[outcome.Outcome[T]],
    *,
    what: str,
    session_id: str | None = None,
) -> T:
    with receive:
        try:
            result = await receive.receive()
        except trio.EndOfChannel:
            raise ActorCrashed(
                "the actor stopped before answering", session_id=session_id, operation=what
            ) from None
    return result.unwrap()


class Mailbox(Generic[M]):
    """A bounded queue of messages for one actor (backpressure by design)."""

    __slots__ = ("_receive", "_send")

    def __init__(self, capacity: int = DEFAULT_MAILBOX_CAPACITY) -> None:
        self._send, self._receive = trio.open_memory_channel[M](capacity)

    async def put(self, message: M, *, what: str = "send", session_id: str | None = None) -> None:
        try:
            await self._send.send(message)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise MailboxClosed(
                "the actor's mailbox is closed", session_id=session_id, operation=what
            ) from None

    def put_nowait(self, message: M) -> bool:
        """Queue without waiting; False if the mailbox is full or closed."""
        try:
            self._send.send_nowait(message)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def get(self) -> M:
        return await self._receive.receive()

    def get_nowait(self) -> M:
        return self._receive.receive_nowait()

    def close(self) -> None:
        """Stop accepting messages; queued ones can still be read."""
        self._send.close()

    def drain(self) -> list[M]:
        out: list[M] = []
        while True:
            try:
                out.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return out


async def ask(
    mailbox: Mailbox[Any],
    make: Callable[[Reply[T]], Any],
    *,
    what: str,
    session_id: str | None = None,
) -> T:
    """Send ``make(reply)`` to ``mailbox`` and wait for the answer."""
    send, receive = trio.open_memory_channel[outcome.Outcome[T]](1)
    reply = Reply(send)
    try:
        await mailbox.put(make(reply), what=what, session_id=session_id)
    except BaseException:
        receive.close()
        raise
    return await await_reply(receive, what=what, session_id=session_id)
