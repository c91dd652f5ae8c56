"""The Sandboxes actor: the one owner of every remote sandbox of a supervisor.

A session on the Daytona backend asks it for its sandbox (the same
:class:`~rho_actors._daytona.RemoteSandbox` every time, made on first use,
so the sandbox survives the session's runs and a restart of its actor).
When a session ends for good (closed, its ``async with`` left, its
restarts given up) it tells this actor, which deletes the sandbox in a
task of its own; when the supervisor shuts down, every sandbox still held
is deleted before the actor returns, in a shielded and bounded scope, so a
cancelled supervisor still cleans up.

Deleting is requested with :meth:`SandboxesRef.release_nowait`, on the
control channel: it must work from the synchronous code that runs when an
actor stops, and it is never blocked by a full mailbox.
"""

from __future__ import annotations

import logging

import attrs
import trio

from ._actor import Mailbox, Reply
from ._daytona import DaytonaBackend, RemoteSandbox, SandboxError

logger = logging.getLogger("rho_actors.sandbox")

__all__ = ["SandboxesRef", "serve_sandboxes"]

SANDBOXES_MAILBOX_CAPACITY = 256
# Deleting every sandbox at shutdown may take this long at most.
SHUTDOWN_DELETE_TIMEOUT = 60.0


@attrs.frozen(slots=True)
class _Acquire:
    session_id: str
    backend: DaytonaBackend
    network: bool
    reply: Reply[RemoteSandbox]


@attrs.frozen(slots=True)
class _Release:
    session_id: str
    done: Reply[None] | None = None


class SandboxesRef:
    """How sessions reach the Sandboxes actor."""

    def __init__(self, mailbox: Mailbox[_Acquire | _Release]) -> None:
        self._mailbox = mailbox

    async def get(
        self, session_id: str, backend: DaytonaBackend, *, network: bool
    ) -> RemoteSandbox:
        """The session's sandbox object (the sandbox itself is made on first use)."""
        reply: Reply[RemoteSandbox] = Reply()
        await self._mailbox.put(
            _Acquire(session_id, backend, network, reply), what="sandbox", session_id=session_id
        )
        return await reply.wait(
            what="sandbox", session_id=session_id, dropped="the sandbox owner stopped"
        )

    async def release(self, session_id: str) -> None:
        """Delete the session's sandbox, if it has one, and wait until it is gone."""
        done: Reply[None] = Reply()
        if not self._mailbox.put_control(_Release(session_id, done)):
            return  # the actor has stopped: it deleted everything on its way out
        await done.wait(what="deleting a sandbox", session_id=session_id)

    def release_nowait(self, session_id: str) -> None:
        """Delete the session's sandbox, if it has one (from synchronous code too)."""
        self._mailbox.put_control(_Release(session_id))

    def close(self) -> None:
        self._mailbox.close()


async def serve_sandboxes(
    *, task_status: trio.TaskStatus[SandboxesRef] = trio.TASK_STATUS_IGNORED
) -> None:
    mailbox: Mailbox[_Acquire | _Release] = Mailbox(SANDBOXES_MAILBOX_CAPACITY)
    owned: dict[str, RemoteSandbox] = {}
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(SandboxesRef(mailbox))
            while True:
                try:
                    message = await mailbox.get()
                except trio.EndOfChannel:
                    break
                if isinstance(message, _Acquire):
                    sandbox = owned.get(message.session_id)
                    if sandbox is None:
                        sandbox = RemoteSandbox(
                            message.backend, message.session_id, network=message.network
                        )
                        owned[message.session_id] = sandbox
                    message.reply.send(sandbox)
                else:
                    released = owned.pop(message.session_id, None)
                    if released is not None:
                        nursery.start_soon(_delete, released, message.done)
                    elif message.done is not None:
                        message.done.send(None)
    finally:
        mailbox.close()
        for pending in mailbox.drain():
            if isinstance(pending, _Acquire):
                pending.reply.drop()
            elif pending.done is not None:
                pending.done.send(None)
        with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_DELETE_TIMEOUT):
            async with trio.open_nursery() as nursery:
                for sandbox in owned.values():
                    nursery.start_soon(_delete, sandbox)


async def _delete(sandbox: RemoteSandbox, done: Reply[None] | None = None) -> None:
    # Daytona's auto-delete backstop and `rho-actors sandboxes sweep` remove
    # what could not be deleted now; nothing else can be done here.
    try:
        await sandbox.delete()
    except SandboxError as exc:
        logger.warning("could not delete a sandbox (the sweep will): %s", exc)
    finally:
        if done is not None:
            done.send(None)
