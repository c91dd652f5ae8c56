"""The seed's ``Session``: the public face of a session actor.

Everything a caller does (``run``, ``resume``, ``cancel``, ``compact``,
``approve``, ``reconfigure``, ``events`` ...) becomes a message to the actor
(:class:`~rho_actors._session._actor.SessionActor`), hosted by a supervisor
or by the ambient host of the ``trio.run`` while it is used.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import trio

from .._actor import Reply, ask
from .._cancel import CancellationToken
from .._config import request_options
from .._daytona import RemoteSandbox
from .._errors import MailboxClosed, RhoError
from .._events import AgentEvent, CompactResult, RunResult
from .._messages import (
    Cancel,
    CompactRequest,
    EventCallback,
    Prompt,
    Reconfigure,
)
from .._output import OutputSpec
from .._profiles import load_profile
from ._actor import _RELEASE_IF_IDLE, SessionActor
from ._handle import (
    REMEMBERED_RUNS,
    LogReply,
    RunHandle,
    RunLog,
    RunStream,
    new_run_id,
    stored_run_events,
)
from ._streams import EVENT_STREAM_CAPACITY, EventStream, SessionRef

# How long a cancelled caller of run() waits for its run to wind down: the
# run's final records are bounded by FINAL_WRITE_TIMEOUT (5 s).
CANCELLED_CALLER_WAIT = 6.0

_run_ids = itertools.count(1)

_RECONFIGURABLE = frozenset({"profile", "working_dir", "auto_approve", "enable_delegate"})


def _check_reconfigurable(changes: dict[str, Any]) -> None:
    unknown = set(changes) - _RECONFIGURABLE
    if unknown:
        raise TypeError(f"cannot reconfigure {', '.join(sorted(unknown))}")


class Session(SessionActor):
    """One conversation with an agent: its State, and the actor that runs it.

    Settable: ``approval_callback``, ``cancel_check``, ``auto_compact``,
    ``context_window``, ``compact_threshold``, ``approval_timeout``,
    ``max_turns``, ``run_timeout`` (seconds before a run is cancelled with
    reason "deadline exceeded").
    """

    __slots__ = ()

    @property
    def ref(self) -> SessionRef:
        """The actor-layer handle: ``send`` (cast), ``ask`` (call), ``monitor``."""
        return SessionRef._create(self)

    @property
    def telemetry_metadata(self) -> dict[str, Any]:
        """Free-form tags recorded with this session's telemetry and meta.json."""
        if self._telemetry_metadata is None:
            self._telemetry_metadata = {}
        return self._telemetry_metadata

    @telemetry_metadata.setter
    def telemetry_metadata(self, value: dict[str, Any]) -> None:
        self._telemetry_metadata = value

    @property
    def hibernating(self) -> bool:
        """True while the session's actor is stopped and its memory freed."""
        return self._hibernating

    @property
    def running(self) -> bool:
        """True while a run is in flight."""
        return self._control is not None

    async def run(
        self,
        prompt: str,
        *,
        on_event: EventCallback | None = None,
        cancel_check: Callable[[], bool] | None = None,
        token: CancellationToken | None = None,
        response_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
        model_options: Mapping[str, Any] | None = None,
        interrupt: bool = False,
        output_type: Any = None,
    ) -> RunResult:
        """Run ``prompt`` to completion and return the result.

        Cancelling the caller cancels the run: the run ends with
        ``status="cancelled"`` and the session stays usable. So does
        cancelling ``token``, or ``cancel_check()`` returning True.
        ``response_timeout`` and ``stream_idle_timeout`` override the
        agent's limits on a silent model endpoint for this run, and
        ``model_options`` its request fields (``temperature``,
        ``max_tokens``, ``tool_choice``, ``extra_body``, ``extra_headers``...:
        the AgentConfig names), checked before the run starts.
        ``interrupt=True`` cancels the run in flight (if any) and runs this
        prompt next, in one step. ``output_type`` asks for a structured
        answer in ``result.output`` (see the README's structured output).
        """
        run_id = next(_run_ids)
        fields = self._prompt_fields(
            response_timeout, stream_idle_timeout, model_options, output_type
        )
        return await self._ask_run(
            run_id,
            lambda reply: Prompt(
                prompt=prompt,
                reply=reply,
                run_id=run_id,
                on_event=on_event,
                cancel_check=cancel_check,
                token=token,
                interrupt=interrupt,
                **fields,
            ),
            interrupt=interrupt,
        )

    def _prompt_fields(
        self,
        response_timeout: float | None,
        stream_idle_timeout: float | None,
        model_options: Mapping[str, Any] | None,
        output_type: Any,
    ) -> dict[str, Any]:
        """A run's per-run settings, checked before anything is queued."""
        settings: dict[str, Any] = {
            name: float(value)
            for name, value in (
                ("response_timeout", response_timeout),
                ("stream_idle_timeout", stream_idle_timeout),
            )
            if value is not None
        }
        for name, value in settings.items():
            if value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value:g}")
        if model_options:
            body, headers = request_options(model_options, source="model_options")
            settings["options"] = body
            settings["extra_headers"] = headers
        fields: dict[str, Any] = {"settings": settings or None}
        if output_type is not None:
            fields["output"] = OutputSpec.of(output_type, source="output_type")
        return fields

    async def start(
        self,
        prompt: str,
        *,
        on_event: EventCallback | None = None,
        token: CancellationToken | None = None,
        response_timeout: float | None = None,
        stream_idle_timeout: float | None = None,
        model_options: Mapping[str, Any] | None = None,
        interrupt: bool = False,
        output_type: Any = None,
    ) -> RunHandle:
        """Queue ``prompt`` and return a :class:`RunHandle` at once.

        The run goes on whatever the caller does next; follow it with
        ``handle.events()``, collect it with ``await handle.wait()``, stop it
        with ``handle.cancel(reason)``. Standalone sessions stay hosted until
        the run ends. The other arguments are those of :meth:`run`.
        """
        fields = self._prompt_fields(
            response_timeout, stream_idle_timeout, model_options, output_type
        )
        run_number = next(_run_ids)
        run_token = CancellationToken()
        unlink = token.subscribe(run_token.cancel) if token is not None else None
        log = RunLog(new_run_id())
        handle = RunHandle._create(self, log, run_token, prompt)

        def cancel_queued(reason: str) -> None:
            # A queued run is answered at once, not when it would have started
            # (a running one is cancelled by the token directly).
            if not log.started:
                self._send_control(Cancel(reason=reason, run_id=run_number))

        run_token.subscribe(cancel_queued)

        def settled() -> None:
            if unlink is not None:
                unlink()
            self._users -= 1
            if self._users == 0 and self._ambient and self._mailbox is not None:
                self._mailbox.put_control(_RELEASE_IF_IDLE)

        message = Prompt(
            prompt=prompt,
            reply=LogReply(log, settled),
            run_id=run_number,
            on_event=on_event,
            token=run_token,
            log=log,
            interrupt=interrupt,
            **fields,
        )
        try:
            async with self._activated() as mailbox:
                if interrupt:
                    if not mailbox.put_control(message):
                        raise MailboxClosed(
                            "the actor's mailbox is closed", session_id=self.id, operation="start"
                        )
                else:
                    await mailbox.put(message, what="start", session_id=self.id)
                # The handle keeps the session hosted until the run settles.
                self._users += 1
        except BaseException:
            if unlink is not None:
                unlink()  # never queued: a long-lived token must not keep it
            raise
        self._remember(handle)
        return handle

    async def send(self, prompt: str, **options: Any) -> RunHandle:
        """Fire and forget: :meth:`start`, for callers that follow :meth:`events`."""
        return await self.start(prompt, **options)

    def stream(self, prompt: str, **options: Any) -> RunStream:
        """``async for event in session.stream(prompt)``: start a run and read its events.

        The last event is ``run_end`` with the result. As ``async with
        session.stream(prompt) as events:``, leaving the block before the
        run ended cancels the run (a reader that went away, a client that
        disconnected); plain ``async for`` leaves it running if abandoned.
        The arguments are those of :meth:`start`.
        """
        return RunStream._create(self, prompt, options)

    def _remember(self, handle: RunHandle) -> None:
        runs = self._runs
        if runs is None:
            runs = self._runs = {}
        runs[handle.id] = handle
        if len(runs) > REMEMBERED_RUNS:
            finished = [run_id for run_id, h in runs.items() if h.done()]
            for run_id in finished[: len(runs) - REMEMBERED_RUNS]:
                del runs[run_id]

    def run_handle(self, run_id: str) -> RunHandle | None:
        """The handle of a run this process started on this session, if still remembered."""
        return (self._runs or {}).get(run_id)

    @property
    def runs(self) -> list[RunHandle]:
        """Handles of this session's recent runs started with :meth:`start`, oldest first."""
        return list((self._runs or {}).values())

    def attach(self, run_id: str, after_seq: int = 0) -> AsyncIterator[AgentEvent]:
        """Follow a run by its id from position ``after_seq``: replay, then live.

        A run this process started (and still remembers) is replayed from
        memory, every event included. Any other run (another process's, or
        one from before a restart) is replayed from the store: only what the
        trace holds comes back (see the README's "Re-attaching"), numbered
        by its own positions, then new records are followed until it ends.
        """
        handle = self.run_handle(run_id)
        if handle is not None:
            return handle.events(after_seq)
        if self._store is None:
            raise RhoError(
                f"no run {run_id!r} in this process, and the session has no store to replay from",
                session_id=self.id,
                operation="attach",
            )
        return stored_run_events(self._store, self.id, run_id, after_seq)

    async def resume(self, *, on_event: EventCallback | None = None) -> RunResult:
        """Continue a paused run once its pending calls are approved or denied."""
        run_id = next(_run_ids)
        return await self._ask_run(
            run_id,
            lambda reply: Prompt(prompt=None, reply=reply, run_id=run_id, on_event=on_event),
        )

    async def _ask_run(
        self,
        run_id: int,
        make: Callable[[Reply[RunResult]], Prompt],
        *,
        interrupt: bool = False,
    ) -> RunResult:
        async with self._activated() as mailbox:
            reply: Reply[RunResult] = Reply()
            if interrupt:
                if not mailbox.put_control(make(reply)):
                    raise MailboxClosed(
                        "the actor's mailbox is closed", session_id=self.id, operation="run"
                    )
            else:
                await mailbox.put(make(reply), what="run", session_id=self.id)
            try:
                return await reply.wait(what="run", session_id=self.id)
            except BaseException:
                if not reply.settled:
                    # The caller was cancelled: cancel the run too, and return
                    # once it has wound down (its state valid, its final
                    # records written), as a cancelled task's cleanup would.
                    mailbox.put_control(
                        Cancel(reason="the caller of run() was cancelled", run_id=run_id)
                    )
                    with (
                        trio.move_on_after(CANCELLED_CALLER_WAIT, shield=True),
                        contextlib.suppress(Exception),
                    ):
                        await reply.wait(what="run", session_id=self.id)
                raise

    async def cancel(self, reason: str = "cancelled by user") -> None:
        """Cancel the run in flight, if any. Not sticky: the next run starts clean."""
        await trio.lowlevel.checkpoint()
        self.cancel_nowait(reason)

    def cancel_nowait(self, reason: str = "cancelled by user") -> None:
        """:meth:`cancel` for synchronous code (cleanup during a cancellation, callbacks).

        A ``Cancel`` message on the actor's control channel, read at once by
        the run in flight. With no actor there is nothing to cancel.
        """
        self._send_control(Cancel(reason=reason))

    async def compact(self, instructions: str | None = None) -> CompactResult:
        """Summarise older history now (``trigger="manual"``)."""
        async with self._activated() as mailbox:
            return await ask(
                mailbox,
                lambda reply: CompactRequest(instructions=instructions, reply=reply),
                what="compact",
                session_id=self.id,
            )

    async def approve(self, tool_call_id: str) -> None:
        """Approve a call waiting for a decision (in a live run, or a paused one)."""
        await self._decide_async(tool_call_id, True, None)

    async def deny(self, tool_call_id: str, reason: str = "denied by user") -> None:
        """Deny a call waiting for a decision; the model is told it was denied."""
        await self._decide_async(tool_call_id, False, reason)

    async def _decide_async(self, tool_call_id: str, approved: bool, reason: str | None) -> None:
        if not any(p.tool_call_id == tool_call_id for p in self.state.pending_approvals) and (
            self._control is None or tool_call_id not in self._control.decisions
        ):
            raise RhoError(
                f"no call {tool_call_id!r} is waiting for approval",
                session_id=self.id,
                operation="approve" if approved else "deny",
            )
        self.decide(tool_call_id, approved, reason)

    async def reconfigure(self, **changes: Any) -> None:
        """Change ``profile``, ``working_dir``, ``auto_approve`` or ``enable_delegate``.

        Applied at the start of the next turn (never in the middle of a tool).
        """
        _check_reconfigurable(changes)
        if "profile" in changes:
            # Resolved here (off the event loop: it may read a YAML file) so a
            # bad profile fails the caller, not the run.
            changes["profile"] = await trio.to_thread.run_sync(load_profile, changes["profile"])
        await trio.lowlevel.checkpoint()
        if not self._send_control(Reconfigure(changes=changes)):
            self._add_changes(changes)
            self._apply_reconfigure()

    def reconfigure_nowait(self, **changes: Any) -> None:
        """:meth:`reconfigure` for synchronous callers (a profile name may read a YAML file).

        Sent as a ``Reconfigure`` message if the actor is running and its
        mailbox has room; otherwise recorded directly, which the actor reads
        at the same point (the start of the next turn).
        """
        _check_reconfigurable(changes)
        if "profile" in changes:
            changes["profile"] = load_profile(changes["profile"])
        if not self._send_control(Reconfigure(changes=changes)):
            # No actor: nothing else owns the session's settings.
            self._add_changes(changes)
            self._apply_reconfigure()

    def events(self, capacity: int = EVENT_STREAM_CAPACITY) -> EventStream:
        """A stream of every event from now on; ``async for`` over it."""
        return EventStream._create(self, capacity)

    async def close(self) -> None:
        """Release the session: open event streams end, and on the Daytona backend
        its sandbox is deleted (local sessions hold nothing else)."""
        for stream in list(self._streams or ()):
            stream._send.close()
        owner, self._sandbox_owner = self._sandbox_owner, None
        if owner is not None:
            await owner.release(self.id)
        if self._services is not None and self._users == 0:
            self._request_stop()

    async def get_sandbox(self) -> Any:
        """The Daytona SDK's sandbox object of a Daytona-backed session, created if it
        does not exist yet; None for the local backend."""
        if self.agent.backend is None:
            return None
        async with self._activated():
            capability = self._sandbox_capability()
        assert capability is not None
        remote = await capability.get()
        return await remote.ensure()

    async def upload(self, local: str | os.PathLike[str], remote: str) -> str:
        """Copy a local file into the sandbox (``remote`` relative to its work dir);
        returns the sandbox path."""
        sandbox = await self._remote_sandbox()
        full = await sandbox.resolve(remote, confine=False)
        data = await trio.Path(local).read_bytes()
        await sandbox.write_bytes(full, data)
        return full

    async def download(self, remote: str, local: str | os.PathLike[str]) -> None:
        """Copy a file from the sandbox to this machine."""
        sandbox = await self._remote_sandbox()
        full = await sandbox.resolve(remote, confine=False)
        await trio.Path(local).write_bytes(await sandbox.read_bytes(full))

    async def _remote_sandbox(self) -> RemoteSandbox:
        if self.agent.backend is None:
            raise RhoError("this session runs locally: it has no sandbox", session_id=self.id)
        async with self._activated():
            capability = self._sandbox_capability()
        assert capability is not None
        return await capability.get()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, status={self.state.status!r})"
