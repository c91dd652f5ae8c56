"""The mailbox and reply primitives every actor is built on."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from rho_actors import ActorCrashed, MailboxClosed
from rho_actors._actor import Mailbox, Reply, ask


async def test_messages_arrive_in_order_and_a_waiting_reader_gets_them_directly() -> None:
    mailbox: Mailbox[int] = Mailbox(4)
    got: list[int] = []

    async def reader() -> None:
        for _ in range(6):
            got.append(await mailbox.get())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(6):
            await mailbox.put(i)
    assert got == list(range(6))
    assert len(mailbox) == 0


async def test_a_full_mailbox_makes_senders_wait_until_there_is_room() -> None:
    mailbox: Mailbox[int] = Mailbox(2)
    assert mailbox.put_nowait(1) and mailbox.put_nowait(2)
    assert not mailbox.put_nowait(3)
    sent = trio.Event()

    async def sender() -> None:
        await mailbox.put(3)
        sent.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set() and len(mailbox) == 2
        assert await mailbox.get() == 1
        await sent.wait()
    assert mailbox.drain() == [2, 3]


async def test_close_ends_the_reader_after_the_queue_and_fails_senders() -> None:
    mailbox: Mailbox[str] = Mailbox(1)
    await mailbox.put("queued")
    errors: list[BaseException] = []

    async def blocked_sender() -> None:
        try:
            await mailbox.put("late", what="tell", session_id="s1")
        except MailboxClosed as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(blocked_sender)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()
    assert len(errors) == 1 and "s1" in str(errors[0]) and "tell" in str(errors[0])
    assert not mailbox.put_nowait("more")
    assert await mailbox.get() == "queued"
    with pytest.raises(trio.EndOfChannel):
        await mailbox.get()
    with pytest.raises(trio.EndOfChannel):
        mailbox.get_nowait()


async def test_close_wakes_a_waiting_reader() -> None:
    mailbox: Mailbox[int] = Mailbox()
    ended = trio.Event()

    async def reader() -> None:
        with pytest.raises(trio.EndOfChannel):
            await mailbox.get()
        ended.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.close()
    assert ended.is_set()


async def test_a_cancelled_reader_leaves_the_mailbox_usable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox: Mailbox[int] = Mailbox()
    with trio.move_on_after(0.01):
        await mailbox.get()
    with pytest.raises(trio.WouldBlock):
        mailbox.get_nowait()
    assert mailbox.put_nowait(7)
    assert await mailbox.get() == 7


async def test_only_one_task_reads_a_mailbox() -> None:
    mailbox: Mailbox[int] = Mailbox()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mailbox.get)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await mailbox.get()
        await mailbox.put(1)


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Mailbox(0)


async def test_ask_returns_the_answer_or_raises_the_actors_error() -> None:
    mailbox: Mailbox[tuple[str, Reply[str]]] = Mailbox()

    async def actor() -> None:
        while True:
            try:
                text, reply = await mailbox.get()
            except trio.EndOfChannel:
                return
            if text == "boom":
                reply.fail(ValueError("bad request"))
            elif text == "drop":
                reply.drop()
            else:
                reply.send(text.upper())
                reply.send("ignored: a reply is settled once")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor)
        assert await ask(mailbox, lambda r: ("hi", r), what="shout") == "HI"
        with pytest.raises(ValueError, match="bad request"):
            await ask(mailbox, lambda r: ("boom", r), what="shout")
        with pytest.raises(ActorCrashed, match="stopped before answering"):
            await ask(mailbox, lambda r: ("drop", r), what="shout", session_id="s9")
        mailbox.close()


async def test_a_caller_that_stops_waiting_marks_the_reply_abandoned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox: Mailbox[Reply[int]] = Mailbox()
    with trio.move_on_after(0.01):
        await ask(mailbox, lambda r: r, what="slow")
    reply = mailbox.get_nowait()
    assert reply.abandoned
    reply.send(1)  # answering an abandoned request is harmless


async def test_a_reply_settled_before_the_wait_is_still_a_checkpoint() -> None:
    reply: Reply[int] = Reply()
    reply.send(5)
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await reply.wait(what="x")
    assert reply.abandoned
    assert await reply.wait(what="x") == 5
