"""The session actor: one task reading a bounded mailbox, handling one message at a time.

While a run is in flight, a second task (the control loop) keeps reading
the mailbox, so ``Cancel``, ``ApprovalDecision`` and ``Reconfigure`` take
effect at once; prompts that arrive meanwhile wait their turn, in order.
Whatever stops the actor, every request waiting on it is answered.

Where does the task live? Under a supervisor (``start_session``) for as long
as the session is open, or, for a session nobody hosts, under the ambient
host of the ``trio.run`` while it is used (see ``rho_actors._host``).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, assert_never

import attrs
import trio

from .._actor import Mailbox, ask
from .._agent import Agent
from .._compaction import DEFAULT_THRESHOLD, context_window_for
from .._daytona import DaytonaBackend, RemoteSandbox
from .._delegation import Delegation
from .._errors import (
    ActorCrashed,
    ActorStopped,
    RhoError,
    ToolError,
    require_trio,
    single_exception,
)
from .._events import AgentEvent, CompactResult, RunResult
from .._hooks import AgentHooks
from .._hosting import SessionHost, SessionStoreHandle, host_ambiently
from .._llm import ModelSettings, ToolCall, encoded_tools
from .._mcp import McpTool, tools_for
from .._messages import (
    ApprovalDecision,
    Cancel,
    CompactRequest,
    Hibernate,
    Prompt,
    Reconfigure,
    SessionMessage,
    Stop,
)
from .._profiles import PermissionProfile, load_profile
from .._run import (
    DEFAULT_APPROVAL_TIMEOUT,
    CompactionFailed,
    RunControl,
    RunTelemetry,
    _parse_args_for_event,
    compact_now,
    execute_run,
)
from .._sandboxes import SandboxesRef
from .._services import Services
from .._state import CHARS_PER_TOKEN, State
from .._tools import ToolHandler, ToolRegistry
from ..tools import builtin_tools
from ._journal import Journal
from ._streams import EventStream, SessionMonitor

ApprovalCallback = Callable[[str, dict[str, Any]], Any]

SESSION_MAILBOX_CAPACITY = 64
# How long a cancelled caller of run() waits for its run to wind down: the
# run's final records are bounded by FINAL_WRITE_TIMEOUT (5 s).
CANCELLED_CALLER_WAIT = 6.0

_run_ids = itertools.count(1)

T = TypeVar("T")


class SessionActor:
    """A session's state and the actor that serves it; :class:`Session` is its facade."""

    # Slots: thousands of sessions live at once; each attribute costs 8 bytes
    # instead of a per-instance dict.
    __slots__ = (
        "__weakref__",
        "_allowed_specs",
        "_ambient",
        "_backlog",
        "_compact_due",
        "_compacted_at",
        "_control",
        "_current_tool",
        "_decisions",
        "_fault",
        "_hibernating",
        "_id",
        "_idle_event",
        "_idle_since",
        "_journal",
        "_left",
        "_live_turns",
        "_mailbox",
        "_mcp_loaded",
        "_monitors",
        "_observability",
        "_paused_output",
        "_pending_changes",
        "_profile",
        "_released",
        "_restart_type",
        "_runs",
        "_sandbox_owner",
        "_services",
        "_shutdown",
        "_state",
        "_store",
        "_streams",
        "_supervisor",
        "_telemetry_metadata",
        "_tools",
        "_users",
        "_waking",
        "_working_dir",
        "agent",
        "approval_callback",
        "approval_timeout",
        "auto_approve",
        "auto_compact",
        "cancel_check",
        "compact_threshold",
        "compaction_model",
        "context_window",
        "depth",
        "max_turns",
        "run_timeout",
    )

    def __init__(
        self,
        agent: Agent,
        *,
        state: State | None = None,
        session_id: str | None = None,
        store: SessionStoreHandle | None = None,
    ) -> None:
        self.agent = agent
        self._state: State | None = state if state is not None else State(session_id)
        self._id = self._state.session_id
        self.approval_callback: ApprovalCallback | None = None
        self.cancel_check: Callable[[], bool] | None = None
        self.auto_compact = True
        self.context_window = context_window_for(agent.config.model)
        self.compact_threshold = DEFAULT_THRESHOLD
        # The model that writes summaries (None: the session's own model).
        self.compaction_model: str | None = None
        # An internal Compact message, handled before the next model call.
        # A field, not the mailbox: posting to its own bounded mailbox could
        # deadlock the actor.
        self._compact_due: str | None = None
        # len(messages) right after the last compaction: the same overflow
        # never triggers a second one.
        self._compacted_at = -1
        self.approval_timeout = DEFAULT_APPROVAL_TIMEOUT
        self.max_turns: int | None = None
        # 0 for a session a user opened; n + 1 for one delegated by a depth-n session.
        self.depth = 0
        # Seconds a run may take before it is cancelled ("deadline exceeded").
        self.run_timeout: float | None = None
        self._idle_event: trio.Event | None = None
        self.auto_approve = agent.config.auto_approve
        self._telemetry_metadata: dict[str, Any] | None = None
        self._store = store
        self._profile: PermissionProfile = agent.profile
        self._tools: ToolRegistry = agent.registry
        # The Sandboxes actor holding this session's Daytona sandbox, once it
        # has one: told to delete it when the session ends for good.
        self._sandbox_owner: SandboxesRef | None = None
        # The MCP servers' tool-list versions this session's MCP tools reflect
        # (None: not discovered yet, or a server failed).
        self._mcp_loaded: tuple[int, ...] | None = None
        self._working_dir: Path | None = None
        self._mailbox: Mailbox[SessionMessage] | None = None
        # Prompts that arrived during a run, in order (rarely more than a few).
        # This and the other per-session containers below stay None until
        # first used: ten thousand idle sessions should not each carry a
        # handful of empty lists and dicts.
        self._backlog: list[SessionMessage] | None = None
        self._services: Services | None = None
        self._control: RunControl | None = None
        self._users = 0
        self._streams: list[EventStream] | None = None
        self._pending_changes: dict[str, Any] | None = None
        self._decisions: dict[str, tuple[bool, str | None]] | None = None
        self._observability: RunTelemetry | None = None
        self._journal = Journal()
        # What a monitor shows: turns of the current run, the tool running now.
        self._live_turns = 0
        self._current_tool: str | None = None
        # Hosting by a supervisor: restart policy, hibernation.
        self._supervisor: SessionHost | None = None
        self._restart_type: Literal["permanent", "transient", "temporary"] = "transient"
        self._shutdown: float | None = None
        # When the actor last started waiting for a message (None: busy or
        # not running); the supervisor's idle sweep reads it.
        self._idle_since: float | None = None
        self._hibernating = False
        # Hosted by the ambient host (not a supervisor the user opened):
        # released when its last caller leaves.
        self._ambient = False
        # Set as the actor stops for an idle release (see _forget_host).
        self._released = False
        # A crash to inject into the next run (rho_actors.testing.crash_next_run).
        self._fault: tuple[BaseException, trio.Event | None] | None = None
        # Set when the actor lets go of its host (see _leave_ambient_host).
        self._left: trio.Event | None = None
        self._waking: trio.Event | None = None
        self._monitors: list[SessionMonitor] | None = None
        # Handles of runs started with start(), by id (see Session.attach).
        self._runs: dict[str, Any] | None = None
        # The output type of a paused run, for the run that resumes it.
        self._paused_output: Any = None
        # The profile-filtered tool specs, and what they were filtered from.
        self._allowed_specs: tuple[Any, PermissionProfile, list[dict[str, Any]]] | None = None
        if store is not None:
            self._state.add_observer(self._journal.record)

    @property
    def id(self) -> str:
        return self._id

    @property
    def state(self) -> State:
        """The conversation. A hibernated session reloads it from the store on access
        (a blocking read; ``await session.wake()`` first in async code)."""
        if self._state is None:
            self._install_state(self._load_state_blocking())
        assert self._state is not None
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        self._install_state(state)

    def _install_state(self, state: State) -> None:
        self._state = state
        self._id = state.session_id
        if self._store is not None:
            state.add_observer(self._journal.record)

    def _load_state_blocking(self) -> State:
        if self._store is None:
            raise RhoError("no store to load the state from", session_id=self._id)
        return self._store.load_state(self._id)

    async def _leave_ambient_host(self) -> None:
        """Wait until the ambient host has released this session (it must be idle)."""
        if self._users or not self._ambient:
            raise RhoError(
                "another Session object for this session id is in use in this process",
                session_id=self.id,
                operation="run",
            )
        if self._left is None:
            self._left = trio.Event()
        left = self._left
        if self._mailbox is not None:
            self._mailbox.put_control(_RELEASE_IF_IDLE)
        await left.wait()

    def _host_left(self) -> None:
        left, self._left = self._left, None
        if left is not None:
            left.set()

    def _forget_host(self) -> None:
        """The ambient host let go of this idle session: the next call hosts it again.

        The actor checked that nothing was queued before it stopped; should
        anything be, it is answered as on any stop. Unlike a stop for good,
        event streams stay open across the release.
        """
        self._released = False
        self._ambient = False
        for message in self._let_go():
            _answer_stopped(message, self.id, "released by the ambient host")
        self._host_left()

    def _let_go(self) -> list[SessionMessage]:
        """Close the mailbox and leave the host; returns what was still queued."""
        mailbox, self._mailbox = self._mailbox, None
        queued, self._backlog = self._backlog or [], None
        if mailbox is not None:
            mailbox.close()
            queued.extend(mailbox.drain())
        self._supervisor = None
        self._idle_since = None
        return queued

    def _actor_ended(self, reason: str) -> None:
        """The actor stopped for good (not a restart, not hibernation).

        Nothing will read its mailbox again, so every request still queued
        is answered now: a prompt that never started returns a cancelled
        result, any other request fails with :class:`ActorStopped`. Later
        sends fail with :class:`MailboxClosed`; open event streams end.
        """
        for message in self._let_go():
            _answer_stopped(message, self.id, reason)
        self._release_sandbox()
        for stream in list(self._streams or ()):
            stream._send.close()
        monitors, self._monitors = self._monitors or [], None
        for monitor in monitors:
            monitor._fire(reason)
        self._host_left()

    @property
    def profile(self) -> PermissionProfile:
        return self._profile

    @property
    def working_dir(self) -> Path:
        return self._working_dir or self.agent.working_dir

    def tool(self, name: str) -> ToolHandler | None:
        """The handler for ``name``, if the profile allows it (custom tools too)."""
        if not self._profile.allows_tool(name):
            return None
        return self._tools.get(name)

    def tool_specs(self) -> list[dict[str, Any]]:
        """What the model is offered: only tools the profile allows."""
        specs = self._tools.specs()
        profile = self._profile
        if profile.tools is None:
            return specs  # built-ins are already chosen by mode; custom ones allowed
        # Filtered once per spec list and profile: the same list object each
        # turn is what lets its JSON encoding be reused (see encoded_tools).
        cached = self._allowed_specs
        if cached is not None and cached[0] is specs and cached[1] is profile:
            return cached[2]
        allowed = [s for s in specs if profile.allows_tool(s["function"]["name"])]
        self._allowed_specs = (specs, profile, allowed)
        return allowed

    def schema_tokens(self) -> int:
        """About how many tokens the tool schemas add to every request.

        From the same encoding the requests send (shared by every session
        of the agent, see ``encoded_tools``): nothing is encoded twice.
        """
        specs = self.tool_specs()
        return len(encoded_tools(specs)) // CHARS_PER_TOKEN if specs else 0

    def context_tokens(self) -> int:
        """Tokens the next request would carry: messages, system prompt and tool schemas."""
        return self.state.estimate_tokens(self.schema_tokens())

    def _schedule_compaction(self) -> None:
        """Post the internal Compact message if the context passed the threshold."""
        window = self.context_window
        if (
            self.auto_compact
            and window > 0
            and len(self.state.messages) > self._compacted_at
            and self.context_tokens() > self.compact_threshold * window
        ):
            self._compact_due = "auto"

    def needs_approval(self, handler: ToolHandler, call: ToolCall) -> bool:
        if handler.requires_approval:
            return True
        return bool(self._profile.needs_approval(call.name, _parse_args_for_event(call.arguments)))

    def _model_settings(self) -> ModelSettings:
        return self.agent.model_settings()

    def decide(self, tool_call_id: str, approved: bool, reason: str | None) -> None:
        """Deliver an approval decision as a message to the actor.

        Through the actor's control channel (see ``Mailbox.put_control``):
        never blocked by a full mailbox. With no actor, nothing else owns the
        session, and the decision is kept for the run that resumes it.
        """
        message = ApprovalDecision(tool_call_id=tool_call_id, approved=approved, reason=reason)
        if not self._send_control(message):
            self._handle_decision(message)

    def _send_control(self, message: SessionMessage) -> bool:
        """Send on the control channel if an actor hosts the session."""
        return self._hosted() and self._mailbox is not None and self._mailbox.put_control(message)

    def _require_services(self) -> Services:
        if self._services is None:
            raise ActorCrashed("the session actor is not running", session_id=self.id)
        return self._services

    async def wake(self) -> None:
        """Start a hibernated session's actor again (its next message does this too)."""
        if not self._hibernating or self._supervisor is None:
            return
        if self._waking is not None:
            await self._waking.wait()
            return
        self._waking = trio.Event()
        try:
            await self._supervisor._wake(self)
        finally:
            self._waking.set()
            self._waking = None

    def _hosted(self) -> bool:
        """An actor serves this session, or its supervisor is restarting one (the
        mailbox survives the restart and the new actor reads it)."""
        return self._mailbox is not None and (
            self._services is not None or self._supervisor is not None
        )

    @contextlib.asynccontextmanager
    async def _activated(self) -> AsyncIterator[Mailbox[SessionMessage]]:
        """Make sure an actor serves this session for the duration of the block.

        A session nobody hosts is hosted by this trio run's ambient host while
        it is used, and released when its last caller leaves.
        """
        require_trio("a session")
        if self._hibernating:
            await self.wake()
        while not self._hosted():
            if self._waking is not None:
                await self._waking.wait()
                continue
            self._waking = trio.Event()
            try:
                await host_ambiently(self)
                self._ambient = True
            finally:
                self._waking.set()
                self._waking = None
        mailbox = self._mailbox
        assert mailbox is not None
        self._users += 1
        try:
            yield mailbox
        finally:
            self._users -= 1
            if self._users == 0 and self._ambient and self._mailbox is not None:
                self._mailbox.put_control(_RELEASE_IF_IDLE)

    async def serve(
        self,
        services: Services,
        *,
        task_status: trio.TaskStatus[Mailbox[SessionMessage]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The actor: read the mailbox until ``Stop``. Started with ``nursery.start``."""
        if self._services is not None:
            raise RhoError("session is already being served", session_id=self.id)
        if self._mailbox is None:
            # Created once and kept: queued messages survive an actor restart.
            self._mailbox = Mailbox(SESSION_MAILBOX_CAPACITY)
        mailbox = self._mailbox
        self._services = services
        task_status.started(mailbox)
        try:
            while True:
                if self._backlog:
                    message = self._backlog.pop(0)
                else:
                    self._idle_since = trio.current_time()
                    try:
                        message = await mailbox.get()
                    except trio.EndOfChannel:
                        return
                    finally:
                        self._idle_since = None
                match message:
                    case Prompt():
                        await self._handle_prompt(message)
                    case CompactRequest():
                        await self._handle_compact(message)
                    case Cancel():
                        pass  # nothing in flight; a cancel is never sticky
                    case ApprovalDecision():
                        self._handle_decision(message)
                    case Reconfigure():
                        self._add_changes(message.changes)
                        self._apply_reconfigure()
                        if message.reply is not None:
                            message.reply.send(None)
                    case Stop():
                        if message.if_idle and (self._users or self._backlog or len(mailbox)):
                            continue  # a caller came back: stay
                        if message.reply is not None:
                            message.reply.send(None)
                        self._released = message.if_idle
                        return
                    case Hibernate():
                        if self._can_hibernate(mailbox):
                            self._hibernate()
                            return
                    case _:
                        assert_never(message)
        finally:
            store = services.store
            if store is not None and self._journal.on_disk:
                store.release_nowait(self._id)  # its open trace file, until it runs again
            self._services = None
            self._control = None

    def _can_hibernate(self, mailbox: Mailbox[SessionMessage]) -> bool:
        """Idle, reloadable, and nobody waiting on or watching the actor."""
        return (
            self._store is not None
            and self._supervisor is not None
            and self._users == 0
            and not self._streams
            and not self._backlog
            and len(mailbox) == 0
        )

    def _hibernate(self) -> None:
        """Free everything but the address; the supervisor keeps this object as it."""
        self._hibernating = True
        if self._journal.on_disk:
            self._state = None  # reloaded from the store on wake
            self._journal.forget_meta()
        self._mailbox = None
        self._journal.drop_unsent()
        self._idle_event = None
        # Finished runs' event logs are the bulk of what a handle holds;
        # attach() replays them from the store once they are gone.
        self._runs = None
        self._allowed_specs = None

    async def _reload_after_hibernation(self) -> None:
        if self._state is None and self._store is not None:
            self._install_state(await self._store.aload_state(self._id))
            self._journal.adopt(self._id, await self._store.aread_meta(self._id))
        self._hibernating = False

    async def _reload_after_crash(self) -> None:
        """Before a restart: the state as the Store has it, with dangling calls closed.

        Records not yet acknowledged by the Store are dropped with the
        crashed incarnation: the restarted session is exactly what was
        committed. Without a store the in-memory state is kept.
        """
        self._journal.drop_unsent()
        self._control = None
        if self._store is not None and self._journal.on_disk:
            self._install_state(await self._store.aload_state(self._id))
        state = self.state
        state.close_dangling_tool_calls("[interrupted: the session restarted after a crash]")
        if state.status == "running":
            state.set_status("interrupted")

    def _request_stop(self) -> None:
        """A supervisor's graceful stop: finish the current message, then stop."""
        if self._mailbox is not None:
            self._mailbox.put_control(Stop())

    async def _in_flight(
        self, work: Callable[[RunControl], Any], control: RunControl | None = None
    ) -> Any:
        """Run ``work`` while a second task keeps serving control messages."""
        control = control if control is not None else RunControl()
        self._control = control
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._control_loop, control)
                try:
                    return await work(control)
                finally:
                    nursery.cancel_scope.cancel(reason="in-flight work finished")
        finally:
            self._control = None
            if self._idle_event is not None:
                self._idle_event.set()
                self._idle_event = None

    async def wait_idle(self) -> None:
        """Return once no run or compaction is in flight."""
        while self._control is not None:
            if self._idle_event is None:
                self._idle_event = trio.Event()
            await self._idle_event.wait()

    async def _control_loop(self, control: RunControl) -> None:
        mailbox = self._mailbox
        assert mailbox is not None
        while True:
            try:
                message = await mailbox.get()
            except trio.EndOfChannel:
                return
            match message:
                case Cancel():
                    if message.run_id is None or message.run_id == control.run_id:
                        control.cancel(message.reason)
                    else:
                        self._drop_queued(message.run_id, message.reason)
                case ApprovalDecision():
                    if not control.decide(message.tool_call_id, message.approved, message.reason):
                        self._handle_decision(message)
                case Reconfigure():
                    self._add_changes(message.changes)
                    if message.reply is not None:
                        message.reply.send(None)
                case Prompt() if message.token is not None and message.token.is_cancelled():
                    _answer_cancelled(message, message.token.reason)
                case Prompt() if message.interrupt:
                    if any(isinstance(m, Stop) for m in self._backlog or ()):
                        # The session is stopping: nothing starts after the stop.
                        _answer_stopped(message, self.id, "the session is stopping")
                        continue
                    # Cancel what runs now and run this prompt next, in one step:
                    # nothing queued can slip in between.
                    control.cancel("interrupted by a new prompt")
                    if self._backlog is None:
                        self._backlog = []
                    self._backlog.insert(0, message)
                case Prompt() | CompactRequest():
                    self._queue_backlog(message)
                case Stop() if message.if_idle:
                    pass  # busy: not idle
                case Stop():
                    if message.grace is not None:
                        control.scope.deadline = min(
                            control.scope.deadline, trio.current_time() + message.grace
                        )
                        control.cancel_reason = control.cancel_reason or "session stopping"
                    self._queue_backlog(message)
                case Hibernate():
                    pass  # busy: not idle, whatever the sweep saw
                case _:
                    assert_never(message)

    def _queue_backlog(self, message: SessionMessage) -> None:
        if self._backlog is None:
            self._backlog = []
        self._backlog.append(message)

    def _drop_queued(self, run_id: int, reason: str) -> None:
        backlog = self._backlog or []
        for queued in list(backlog):
            if isinstance(queued, Prompt) and queued.run_id == run_id:
                backlog.remove(queued)
                _answer_cancelled(queued, reason)

    async def _handle_prompt(self, message: Prompt) -> None:
        reply = message.reply
        if reply is not None and reply.abandoned:
            # The caller gave up while the prompt was queued: the run never starts.
            _answer_stopped(message, self.id, "its caller was cancelled")
            return
        if message.token is not None and message.token.is_cancelled():
            _answer_cancelled(message, message.token.reason)
            return
        if message.log is not None:
            message.log.started = True
        control = RunControl(message.run_id)

        async def work(control: RunControl) -> RunResult:
            if fault is not None:
                # A crash injected by rho_actors.testing.crash_next_run: it
                # fails here, in the actor's own machinery, as a bug would.
                await _raise_fault(*fault)
            return await execute_run(
                self,
                prompt=message.prompt,
                on_event=message.on_event,
                cancel_check=message.cancel_check,
                token=message.token,
                control=control,
                settings=message.settings,
                log=message.log,
                output=message.output,
            )

        fault, self._fault = self._fault, None
        try:
            result = await self._in_flight(work, control)
        except BaseException as exc:
            # Whatever stops the actor mid-run, its caller gets an answer:
            # the cancelled run's result if the run got as far as making
            # one, else an error saying why the actor went away.
            if reply is not None:
                if control.result is not None:
                    reply.send(control.result)
                elif isinstance(exc, Exception):
                    cause = single_exception(exc)
                    reply.fail(
                        ActorCrashed(
                            "the session actor crashed during the run: "
                            f"{type(cause).__name__}: {cause}",
                            session_id=self.id,
                            operation="run",
                        )
                    )
                else:
                    reply.fail(
                        ActorStopped(
                            "the session actor stopped during the run",
                            reason=getattr(exc, "reason", None) or type(exc).__name__,
                            session_id=self.id,
                            operation="run",
                        )
                    )
            raise
        if reply is not None:
            reply.send(result)

    async def _handle_compact(self, message: CompactRequest) -> None:
        async def emit(event: AgentEvent) -> None:
            self._publish(event)

        async def work(control: RunControl) -> CompactResult | CompactionFailed | None:
            # Failures are returned, not raised: raised inside _in_flight's
            # nursery they would arrive wrapped in an exception group.
            with control.scope:
                try:
                    return await compact_now(self, emit, "manual", message.instructions)
                except CompactionFailed as exc:
                    return exc
            return None  # cancelled

        result = await self._in_flight(work)
        if isinstance(result, CompactionFailed):
            self._publish(AgentEvent("error", content=str(result)))
            message.reply.fail(RhoError(str(result), session_id=self.id, operation="compact"))
            return
        if result is None:
            message.reply.fail(
                RhoError("compaction cancelled", session_id=self.id, operation="compact")
            )
            return
        message.reply.send(result)

    def _handle_decision(self, message: ApprovalDecision) -> None:
        """A decision for a paused run: kept until the run resumes."""
        if self._decisions is None:
            self._decisions = {}
        self._decisions[message.tool_call_id] = (message.approved, message.reason)

    def _take_decisions(self) -> dict[str, tuple[bool, str | None]]:
        decisions, self._decisions = self._decisions, None
        return decisions or {}

    def _add_changes(self, changes: dict[str, Any]) -> None:
        """Record reconfigure changes; the actor applies them at the next turn."""
        if self._pending_changes is None:
            self._pending_changes = {}
        self._pending_changes.update(changes)

    def _apply_reconfigure(self) -> None:
        changes, self._pending_changes = self._pending_changes, None
        if not changes:
            return
        if "working_dir" in changes:
            value = changes["working_dir"]
            self._working_dir = Path(value) if value is not None else None
        if "auto_approve" in changes:
            self.auto_approve = bool(changes["auto_approve"])
        if "profile" in changes:
            profile = load_profile(changes["profile"])
            self._profile = profile
            self._journal.profile_changed()
            builtin = {h.name for h in builtin_tools(self.agent.profile)}
            custom = [h for h in self.agent.registry if h.name not in builtin]
            self._tools = ToolRegistry([*builtin_tools(profile, remote=self.agent.remote), *custom])
        if "enable_delegate" in changes and not changes["enable_delegate"]:
            if self._tools is self.agent.registry:
                self._tools = self._tools.copy()
            self._tools.unregister("delegate")

    def _sandbox_capability(self) -> SandboxCapability | None:
        """What this session's tools get to reach its Daytona sandbox (None when local)."""
        backend = self.agent.backend
        if backend is None:
            return None
        owner = self._require_services().sandboxes
        if owner is None:
            raise RhoError("no sandbox owner in these services", session_id=self.id)
        self._sandbox_owner = owner
        return SandboxCapability(owner, self.id, backend, network=self._profile.network)

    async def _load_mcp_tools(self) -> list[str]:
        """Discover the agent's MCP tools, once (connecting to each server lazily);
        returns what went wrong. A server that failed is tried again next run."""
        specs = self.agent.mcp_servers
        if not specs:
            return []
        servers = self._require_services().mcp
        if servers is None:
            return ["no MCP connections in these services"]
        versions = tuple(servers.version(spec) for spec in specs)
        if self._mcp_loaded == versions:
            return []
        problems: list[str] = []
        handlers: list[ToolHandler] = []
        for spec in specs:
            try:
                listed = await servers.tools(spec)
            except ToolError as exc:
                problems.append(str(exc))
                continue
            handlers += tools_for(spec, listed, self._profile)
        if self._tools is self.agent.registry:
            self._tools = self._tools.copy()
        for old in [h.name for h in self._tools if isinstance(h, McpTool)]:
            self._tools.unregister(old)
        for handler in handlers:
            if handler.name not in self._tools:
                self._tools.register(handler)
        # A server that failed is tried again next run; a changed list is re-read.
        self._mcp_loaded = None if problems else tuple(servers.version(s) for s in specs)
        return problems

    def _run_hooks(self) -> tuple[AgentHooks, ...]:
        """The agent's hooks, then its supervisor's."""
        supervisor = self._supervisor
        extra = supervisor.hooks if supervisor is not None else ()
        return (*self.agent.hooks, *extra) if extra else self.agent.hooks

    def _mcp_capability(self) -> Any:
        services = self._services
        return services.mcp if services is not None else None

    def _release_sandbox(self) -> None:
        owner, self._sandbox_owner = self._sandbox_owner, None
        if owner is not None:
            owner.release_nowait(self.id)

    def _delegation(self) -> Delegation:
        """The capability this session's tools get to start a child session."""

        async def run_child(
            prompt: str, profile: PermissionProfile, may_delegate: bool
        ) -> RunResult:
            return await self._run_child(prompt, profile, may_delegate)

        return Delegation(depth=self.depth, profile=self._profile, run_child=run_child)

    async def _run_child(
        self, prompt: str, profile: PermissionProfile, may_delegate: bool
    ) -> RunResult:
        """A child session on this one's services, living inside the calling tool call."""
        config = attrs.evolve(
            self.agent.config,
            profile=profile,
            working_dir=str(self.working_dir),
            auto_approve=self.auto_approve,
        )
        child_agent = Agent(config)
        builtin = {h.name for h in builtin_tools(self.agent.profile)}
        for handler in self.agent.registry:
            # Custom tools carry over; built-ins come from the child's profile.
            if handler.name not in builtin and handler.name != "delegate":
                child_agent.registry.register(handler)
        if not may_delegate:
            child_agent.registry.unregister("delegate")
        child = type(self)(child_agent)
        child.depth = self.depth + 1
        child.approval_callback = self.approval_callback
        child.approval_timeout = self.approval_timeout
        child.run_timeout = self.run_timeout
        services = self._require_services()
        async with trio.open_nursery() as nursery:
            mailbox = await nursery.start(child.serve, services)
            result: RunResult = await ask(
                mailbox,
                lambda reply: Prompt(prompt=prompt, reply=reply),
                what="delegate",
                session_id=child.id,
            )
            nursery.cancel_scope.cancel(reason="delegated run finished")
        return result

    def _publish(self, event: AgentEvent) -> None:
        if self._streams:
            for stream in list(self._streams):
                if not stream._offer(event):
                    self._streams.remove(stream)

    async def _persist(
        self,
        *,
        run_started: bool = False,
        prompt: str | None = None,
        run_finished: bool = False,
        live: bool = False,
    ) -> None:
        """Send queued records to the Store and wait for the commit (see ``Journal``)."""
        services = self._services
        store = services.store if services is not None else None
        if store is None or self._store is None:
            self._journal.drop_unsent()
            return
        await self._journal.persist(
            self,
            store,
            run_started=run_started,
            prompt=prompt,
            run_finished=run_finished,
            live=live,
        )

    def _adopt_stored(self, meta: dict[str, Any] | None) -> None:
        """Mark a session loaded from the store as already on disk."""
        self._journal.adopt(self.id, meta)

    @property
    def profile_name(self) -> str:
        return self._profile.name


_RELEASE_IF_IDLE = Stop(if_idle=True)


async def _raise_fault(error: BaseException, after: trio.Event | None) -> None:
    if after is not None:
        await after.wait()
    raise error


def _answer_cancelled(message: Prompt, reason: str) -> None:
    """Answer a prompt cancelled before it started: it never runs."""
    if message.reply is not None:
        message.reply.send(
            RunResult(text="", events=[], status="cancelled", usage={}, cancel_reason=reason)
        )


def _answer_stopped(message: SessionMessage, session_id: str, reason: str) -> None:
    """Answer a request the actor will never read because it stopped for good."""
    match message:
        case Prompt():
            _answer_cancelled(message, f"the session stopped before this run started ({reason})")
        case CompactRequest() | Reconfigure():
            operation = "compact" if isinstance(message, CompactRequest) else "reconfigure"
            if message.reply is not None:
                message.reply.fail(
                    ActorStopped(
                        f"the session stopped before it could {operation}",
                        reason=reason,
                        session_id=session_id,
                        operation=operation,
                    )
                )
        case Stop():
            if message.reply is not None:
                message.reply.send(None)
        case Cancel() | ApprovalDecision() | Hibernate():
            pass  # casts: nobody waits for an answer
        case _:
            assert_never(message)


@attrs.frozen(slots=True)
class SandboxCapability:
    """A tool's way to its session's sandbox, and nothing else of the session."""

    owner: SandboxesRef
    session_id: str
    backend: DaytonaBackend
    network: bool

    async def get(self) -> RemoteSandbox:
        return await self.owner.get(self.session_id, self.backend, network=self.network)
