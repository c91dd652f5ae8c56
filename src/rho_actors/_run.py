"""One run: the agent loop a Session actor executes for a Prompt.

The loop streams a model reply, runs the tool calls through the Registry
actor, feeds the results back and repeats until the model answers without
tool calls, a limit is hit, or the run is cancelled.

Everything a run waits on (the model, a tool, an approval, a compaction)
happens inside the run's cancel scope, so a cancel from any source stops it
at once. Whatever stopped it, the run ends the same way: dangling tool calls
are answered, the final records are written in a shielded, bounded scope,
and a :class:`RunResult` is returned.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import attrs
import trio

from ._agent import Agent
from ._cancel import CancellationToken
from ._compaction import summarise
from ._delegation import Delegation
from ._errors import ContextLengthExceeded, ModelError, StoreError
from ._events import (
    AgentEvent,
    ApprovalInterrupt,
    CompactResult,
    PendingApproval,
    RunResult,
    RunStatus,
)
from ._hooks import EVENT_HOOKS, AgentHooks, HookContext, HookFailed, call_hook, check_guardrails
from ._llm import ModelClient, ModelSettings, ModelTurn, ToolCall
from ._messages import Cancel, EventCallback, EventLog
from ._output import FINAL_ANSWER_TOOL, OutputInvalid, OutputSpec, feedback
from ._profiles import PermissionProfile
from ._records import Number
from ._services import Services
from ._state import State, add_usage, empty_usage
from ._tools import ToolContext, ToolHandler, ToolOutput
from ._tracing import set_attributes, span
from .tools._common import truncate_middle


class RunTelemetry(Protocol):
    """Where a run reports its model calls, tool calls and end (see ``_observability``)."""

    def model_call(self, run: int, usage: Mapping[str, int], duration_ms: float) -> None: ...

    def tool_call(
        self, run: int, name: str, duration_ms: float, is_error: bool, error: str | None
    ) -> None: ...

    def run_finished(self, run: int, result: RunResult, started_at: float) -> None: ...

    async def flush(self) -> None: ...


class Session(Protocol):
    """What a run uses of its session: the explicit boundary between the agent loop
    and the actor that runs it (``rho_actors._session.Session`` implements it).

    Settings are read, the State and the few run-scoped fields below are
    changed, and everything else is a call.
    """

    state: State
    agent: Agent
    approval_callback: Callable[[str, dict[str, Any]], Any] | None
    approval_timeout: float
    auto_approve: bool
    cancel_check: Callable[[], bool] | None
    compaction_model: str | None
    max_turns: int | None
    run_timeout: float | None
    # Run-scoped: the internal Compact message, where the last compaction
    # ended, and what a monitor shows (turns so far, the tool running now).
    _compact_due: str | None
    _compacted_at: int
    _live_turns: int
    _current_tool: str | None
    _observability: RunTelemetry | None

    @property
    def id(self) -> str: ...
    @property
    def profile(self) -> PermissionProfile: ...
    @property
    def working_dir(self) -> Path: ...

    def tool(self, name: str) -> ToolHandler | None: ...
    def tool_specs(self) -> list[dict[str, Any]]: ...
    def needs_approval(self, handler: ToolHandler, call: ToolCall) -> bool: ...
    def decide(self, tool_call_id: str, approved: bool, reason: str | None) -> None: ...
    def _require_services(self) -> Services: ...
    def _model_settings(self) -> ModelSettings: ...
    def _schedule_compaction(self) -> None: ...
    def _apply_reconfigure(self) -> None: ...
    def _take_decisions(self) -> dict[str, tuple[bool, str | None]]: ...
    def _send_control(self, message: Cancel) -> bool: ...
    def _publish(self, event: AgentEvent) -> None: ...
    def _delegation(self) -> Delegation: ...
    def _sandbox_capability(self) -> Any: ...
    def _mcp_capability(self) -> Any: ...
    async def _load_mcp_tools(self) -> list[str]: ...
    def _run_hooks(self) -> tuple[AgentHooks, ...]: ...
    def schema_tokens(self) -> int: ...
    def context_tokens(self) -> int: ...

    _paused_output: OutputSpec | None

    async def _persist(
        self,
        *,
        run_started: bool = False,
        prompt: str | None = None,
        run_finished: bool = False,
        live: bool = False,
    ) -> None: ...


logger = logging.getLogger("rho_actors.run")

# How long the final records of a cancelled run may take to reach the store.
FINAL_WRITE_TIMEOUT = 5.0
# How long on_run_end hooks may take (inside the final-write budget).
RUN_END_HOOK_TIMEOUT = 2.0
# How often a cancel_check callable is polled while a run waits.
CANCEL_CHECK_INTERVAL = 0.05
# A decision that never comes is a denial.
DEFAULT_APPROVAL_TIMEOUT = 600.0

CANCELLED_RESULT = "[cancelled before this tool call finished]"
DENIED_RESULT = "[denied: {reason}]"


@attrs.frozen(slots=True)
class GoOn:
    """A step's result: the run carries on (the next turn, or the next call)."""


@attrs.frozen(slots=True)
class RunEnds:
    """A step's result: the run ends here, with this status (and why, if not completed)."""

    status: RunStatus
    error: str | None = None


Step = GoOn | RunEnds
"""What each step of the loop returns: go on, or end the run (and how)."""

GO_ON = GoOn()


class CallbackFailed(Exception):
    """An ``on_event`` callback raised: the run ends with status ``error``."""


class RunControl:
    """What the actor's control loop and the run share while the run is in flight."""

    __slots__ = (
        "_drop_connection",
        "cancel_reason",
        "decisions",
        "interruption_sent",
        "paused",
        "result",
        "run_id",
        "scope",
    )

    def __init__(self, run_id: int = 0) -> None:
        self.run_id = run_id
        self.scope = trio.CancelScope()
        self.cancel_reason: str | None = None
        self.decisions: dict[str, _Decision] = {}
        self.paused: list[PendingApproval] = []
        # One pause is one `interruption` event, however it came about.
        self.interruption_sent = False
        # The run's result, set as soon as it is known: a run stopped from
        # outside (its actor shut down or restarted) still answers its caller
        # with it while the cancellation goes on unwinding.
        self.result: RunResult | None = None
        self._drop_connection: Callable[[], None] | None = None

    def hold_connection(self, drop: Callable[[], None] | None) -> None:
        """While a model stream is open: how to drop its connection at once (None after)."""
        self._drop_connection = drop

    def cancel(self, reason: str) -> None:
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.scope.cancel(reason=reason)
        # The cancelled run reaches its socket only after unwinding the HTTP
        # stack, several hundred microseconds per stream when a thousand are
        # cancelled together; closing it here tells the provider at once
        # that nobody is reading (it stops generating, and billing).
        drop, self._drop_connection = self._drop_connection, None
        if drop is not None:
            drop()

    def decide(self, tool_call_id: str, approved: bool, reason: str | None) -> bool:
        decision = self.decisions.get(tool_call_id)
        if decision is None or decision.event.is_set():
            return False
        decision.approved = approved
        decision.reason = reason
        decision.event.set()
        return True


@attrs.define(slots=True)
class _Decision:
    event: trio.Event = attrs.field(factory=trio.Event)
    approved: bool = False
    reason: str | None = None


class Events:
    """Collects a run's events and fans them out to callbacks and streams."""

    __slots__ = ("_callbacks", "_log", "_session", "ctx", "events", "hooks")

    def __init__(
        self,
        session: Session,
        on_event: EventCallback | None,
        log: EventLog | None = None,
        hooks: tuple[AgentHooks, ...] = (),
        ctx: HookContext | None = None,
    ) -> None:
        # A run started with a handle appends straight to the handle's log:
        # its readers follow the run with no copy.
        self.events: list[AgentEvent] = log.events if log is not None else []
        self._log = log
        self._session = session
        self._callbacks = [cb for cb in (on_event,) if cb is not None]
        self.hooks = hooks
        self.ctx = ctx

    async def hook(self, method: str, *args: Any) -> None:
        """Call a lifecycle hook; one that raises ends the run like a failed callback."""
        if self.hooks:
            assert self.ctx is not None
            try:
                await call_hook(self.hooks, method, self.ctx, *args)
            except HookFailed as exc:
                raise CallbackFailed(str(exc)) from exc

    async def emit(self, event: AgentEvent) -> None:
        self.events.append(event)
        if self._log is not None:
            self._log.changed()
        for callback in self._callbacks:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                name = getattr(callback, "__qualname__", repr(callback))
                raise CallbackFailed(
                    f"on_event callback {name} raised {type(exc).__name__}: {exc}"
                ) from exc
        if self.hooks:
            method = EVENT_HOOKS.get(event.type)
            if method is not None:
                await self.hook(method, event)
        self._session._publish(event)


def _parse_args_for_event(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}


@attrs.define(slots=True)
class _RunTotals:
    run: int = 0
    started_at: float = 0.0
    usage: dict[str, Number] = attrs.field(factory=empty_usage)
    tool_executions: int = 0
    turns: int = 0
    last_text: str = ""
    truncated: bool = False
    # A tool failure that ends the run once the turn's calls are answered.
    fatal: str | None = None
    structured: _Structured | None = None
    output: Any = None
    blocked_by: str | None = None
    run_id: str | None = None


@attrs.define(slots=True)
class _Structured:
    """A run's structured output: how it is asked for, and the attempts so far."""

    spec: OutputSpec
    mode: Literal["response_format", "tool"]
    # May still fall back from response_format to the final-answer tool.
    auto: bool
    attempts: int = 0


async def execute_run(
    session: Session,
    *,
    prompt: str | None,
    on_event: EventCallback | None,
    cancel_check: Callable[[], bool] | None,
    control: RunControl,
    token: CancellationToken | None = None,
    settings: Mapping[str, Any] | None = None,
    log: EventLog | None = None,
    output: OutputSpec | None = None,
) -> RunResult:
    """Run one prompt (or resume a paused run) and return its result.

    ``token`` may be cancelled from any task of this trio run, for as long
    as the run lasts (guardrails and ``on_run_end`` included): it cancels
    the run's scope there and then (synchronous, idempotent), with no
    message for the actor's control loop to wake up for: a token that
    cancels a thousand runs costs a thousand fewer wakeups.
    """
    unsubscribe = token.subscribe(control.cancel) if token is not None else None
    try:
        return await _execute_run(
            session,
            prompt=prompt,
            on_event=on_event,
            cancel_check=cancel_check,
            control=control,
            settings=settings,
            log=log,
            output=output,
        )
    finally:
        if unsubscribe is not None:
            unsubscribe()


async def _execute_run(
    session: Session,
    *,
    prompt: str | None,
    on_event: EventCallback | None,
    cancel_check: Callable[[], bool] | None,
    control: RunControl,
    settings: Mapping[str, Any] | None,
    log: EventLog | None,
    output: OutputSpec | None,
) -> RunResult:
    state = session.state
    handle_id = log.id if log is not None else None
    hooks = session._run_hooks()
    ctx = HookContext(session_id=session.id, run_id=handle_id, prompt=prompt) if hooks else None
    events = Events(session, on_event, log, hooks, ctx)
    totals = _RunTotals(run_id=handle_id)
    status: RunStatus = "completed"
    error: str | None = None
    services = session._require_services()
    model_settings = session._model_settings()
    if settings:
        overrides = dict(settings)
        # A run's request options add to the agent's, field by field.
        for name in ("options", "extra_headers"):
            if name in overrides:
                overrides[name] = {**getattr(model_settings, name), **overrides[name]}
        model_settings = attrs.evolve(model_settings, **overrides)
    # A resumed run keeps the output type its paused run was asked for.
    spec = output or (session._paused_output if prompt is None else None) or session.agent.output
    if spec is not None:
        structured = _Structured(
            spec, "tool" if spec.mode == "tool" else "response_format", auto=spec.mode == "auto"
        )
        totals.structured = structured
        if structured.mode == "response_format":
            model_settings = attrs.evolve(model_settings, response_format=spec.response_format())
    client = ModelClient(services.clients, model_settings)
    if totals.structured is not None and totals.structured.auto and client.json_schema_refused:
        totals.structured.mode = "tool"
        client = client.with_settings(response_format=None)

    if not state.messages and session.agent.system_prompt:
        state.add_system_message(session.agent.system_prompt)
    totals.run = state.start_run(prompt if prompt is not None else "", run_id=handle_id)
    totals.started_at = time.time()
    if prompt is not None and state.unanswered_tool_calls():
        # A new prompt instead of resume(): the paused calls are denied
        # (fail closed) so the history stays valid.
        for pending in list(state.pending_approvals):
            state.resolve_approval(pending.tool_call_id, False, "superseded by a new prompt")
        state.close_dangling_tool_calls(
            "[not executed: a new prompt arrived before this call was approved]"
        )
    if prompt is not None and session.agent.input_guardrails:
        checked = await _cancellable(control, lambda: _check_input(session, prompt, totals))
        if checked is _CANCELLED:
            return await _finish(session, events, totals, "cancelled", None, control)
        if checked is not None:
            return await _finish(session, events, totals, "error", str(checked), control)
        control.scope = trio.CancelScope()  # a fresh one for the run itself
    if prompt is not None:
        state.add_user_message(prompt)
    session._live_turns = 0
    session._current_tool = None
    try:
        await session._persist(run_started=True, prompt=prompt)
    except StoreError as exc:
        # The run cannot be recorded: it fails without calling the model.
        return await _finish(session, events, totals, "error", exc.message, control)

    timeout = session.run_timeout
    if timeout is not None:
        control.scope.deadline = trio.current_time() + timeout

    check = cancel_check or session.cancel_check
    try:
        with (
            span(
                "rho_actors.run",
                session_id=session.id,
                run=totals.run,
                model=session.agent.config.model,
            ) as run_span,
            control.scope,
        ):
            if check is None:
                end = await _guarded_loop(session, client, events, totals, control)
            else:
                async with trio.open_nursery() as watchers:
                    watchers.start_soon(_watch_cancel_check, check, control)
                    end = await _guarded_loop(session, client, events, totals, control)
                    watchers.cancel_scope.cancel(reason="run finished")
            status, error = end.status, end.error
            set_attributes(run_span, status=status)
    except trio.Cancelled as exc:
        # The enclosing scope was cancelled, not just this run (the actor is
        # stopping or restarting). Still leave the State valid, the trace
        # complete and the result on ``control`` before letting it through.
        if control.cancel_reason is None:
            control.cancel_reason = exc.reason or "the enclosing scope was cancelled"
        with trio.move_on_after(FINAL_WRITE_TIMEOUT, shield=True):
            await _finish(session, events, totals, "cancelled", None, control)
        raise
    if control.scope.cancelled_caught:
        status = "cancelled"
        if control.cancel_reason is None:
            control.cancel_reason = "deadline exceeded" if timeout is not None else "cancelled"

    return await _finish(session, events, totals, status, error, control)


async def _watch_cancel_check(check: Callable[[], bool], control: RunControl) -> None:
    while True:
        try:
            if check():
                control.cancel("cancel_check returned True")
                return
        except Exception as exc:
            control.cancel(f"cancel_check raised {type(exc).__name__}: {exc}")
            return
        await trio.sleep(CANCEL_CHECK_INTERVAL)


async def _guarded_loop(
    session: Session,
    client: ModelClient,
    events: Events,
    totals: _RunTotals,
    control: RunControl,
) -> RunEnds:
    """The loop, with the failures that end a run turned into an ``error`` status.

    Caught here, inside any nursery, so they never arrive wrapped in an
    exception group.
    """
    try:
        return await _loop(session, client, events, totals, control)
    except CallbackFailed as exc:
        return RunEnds("error", str(exc))
    except (ModelError, StoreError) as exc:
        return RunEnds("error", str(exc) if isinstance(exc, StoreError) else exc.message)


async def _loop(
    session: Session,
    client: ModelClient,
    events: Events,
    totals: _RunTotals,
    control: RunControl,
) -> RunEnds:
    state = session.state
    config = session.agent.config
    max_turns = session.max_turns or config.max_turns
    max_tools = config.max_tool_executions
    context_retry_used = False
    structured = totals.structured
    await events.hook("on_run_start")
    # The agent's MCP tools, discovered on first use of the session: a server
    # that cannot be reached is reported, and the run goes on without it.
    for problem in await session._load_mcp_tools():
        await events.emit(AgentEvent("error", content=problem))
    # A resumed run starts by executing the decided calls of the paused turn.
    if state.unanswered_tool_calls():
        step = await _answer_pending(session, events, totals, control)
        if isinstance(step, RunEnds):
            return step

    while totals.turns < max_turns:
        # Before every model call, the first of a run included: a resumed or
        # pre-filled history over the threshold is compacted before it is sent.
        session._schedule_compaction()
        if session._compact_due is not None:
            trigger, session._compact_due = session._compact_due, None
            await _compact(session, events, trigger)
        session._apply_reconfigure()

        async def on_text(delta: str) -> None:
            await events.emit(AgentEvent("text", content=delta))

        async def on_retry(
            failure: Exception, delay: float, attempt: int, client: ModelClient = client
        ) -> None:
            # A slow or failing endpoint is visible at once, not a blank wait.
            message = client.describe_retry(failure, delay, attempt)
            logger.warning("session %s: %s", session.id, message)
            await events.emit(AgentEvent("retry", content=message))

        tools = session.tool_specs() or None
        if structured is not None and structured.mode == "tool":
            tools = [*(tools or ()), structured.spec.tool_spec()]
        await events.hook("on_model_start", totals.turns + 1)
        started = time.perf_counter()
        try:
            with span("rho_actors.model_call", session_id=session.id, model=config.model) as call:
                turn = await client.stream(
                    state.encoded_messages(),
                    tools,
                    on_text=on_text,
                    on_retry=on_retry,
                    hold_connection=control.hold_connection,
                )
                set_attributes(
                    call,
                    input_tokens=turn.usage.get("input_tokens"),
                    output_tokens=turn.usage.get("output_tokens"),
                )
        except ContextLengthExceeded:
            if context_retry_used:
                raise
            context_retry_used = True
            await _compact(session, events, "auto")
            continue
        except ModelError as exc:
            if structured is None or not _refused_json_schema(structured, exc):
                raise
            # The endpoint has no json_schema mode: ask through the final-answer
            # tool instead, for the rest of this run and every later one.
            client.refuse_json_schema()
            client = client.with_settings(response_format=None)
            structured.mode = "tool"
            note = "the endpoint refused response_format json_schema: using a final_answer tool"
            logger.info("session %s: %s", session.id, note)
            await events.emit(AgentEvent("retry", content=note))
            continue
        totals.turns += 1
        session._live_turns = totals.turns
        if session._observability is not None:
            session._observability.model_call(
                totals.run, turn.usage, (time.perf_counter() - started) * 1000
            )
        await _account(session, events, totals, turn)
        state.add_assistant_message(
            turn.text or None, [call.to_message() for call in turn.tool_calls] or None
        )
        if turn.text:
            totals.last_text = turn.text
        totals.truncated = turn.finish_reason == "length"
        calls = turn.tool_calls
        answers: list[ToolCall] = []
        if structured is not None and structured.mode == "tool":
            answers = [c for c in calls if c.name == FINAL_ANSWER_TOOL]
            calls = [c for c in calls if c.name != FINAL_ANSWER_TOOL]
        if structured is not None and not turn.tool_calls:
            try:
                totals.output = structured.spec.parse_text(turn.text)
            except OutputInvalid as exc:
                end = await _reject_answer(session, totals, structured, str(exc), None)
                if end is not None:
                    return end
                continue
        if not turn.tool_calls:
            await events.emit(
                AgentEvent(
                    "turn_complete",
                    content=turn.text,
                    usage=dict(totals.usage),
                    finish_reason=turn.finish_reason,
                )
            )
            await session._persist()
            session._schedule_compaction()
            return RunEnds("completed")

        if calls:
            session._current_tool = ", ".join(sorted({c.name for c in calls}))
            await session._persist(live=True)
            step = await _run_tools(session, events, totals, control, calls, max_tools)
            session._current_tool = None
            if isinstance(step, RunEnds) and step.status == "paused":
                # The final answer waits with the turn: asked again after it.
                for call in answers:
                    state.add_tool_result(
                        call.id,
                        "[not taken yet: other calls of this turn wait for approval; "
                        "give the final answer again when they are done]",
                    )
            await session._persist(live=True)
            if isinstance(step, RunEnds):
                return step
        if answers:
            assert structured is not None
            end = await _take_answer(session, events, totals, structured, answers)
            if end is not None:
                return end
        session._schedule_compaction()
    return RunEnds("error", f"max_turns ({max_turns}) reached before a final answer")


def _refused_json_schema(structured: _Structured, exc: ModelError) -> bool:
    """A 400 about the structured-output mode, in ``auto`` mode: fall back to the tool."""
    if not structured.auto or structured.mode != "response_format":
        return False
    if exc.status_code not in (400, 422):
        return False
    text = exc.message.lower()
    return any(word in text for word in ("response_format", "json_schema", "structured"))


async def _take_answer(
    session: Session,
    events: Events,
    totals: _RunTotals,
    structured: _Structured,
    answers: list[ToolCall],
) -> RunEnds | None:
    """The model called the final-answer tool: accept its answer, or tell it why not."""
    state = session.state
    first, *extra = answers
    for call in extra:
        state.add_tool_result(call.id, "[ignored: only the first final answer counts]")
    args = _parse_args_for_event(first.arguments)
    await events.emit(
        AgentEvent("tool_start", tool_name=first.name, tool_call_id=first.id, tool_args=args)
    )
    try:
        totals.output = structured.spec.parse_arguments(first.arguments)
    except OutputInvalid as exc:
        await events.emit(
            AgentEvent(
                "tool_end", tool_name=first.name, tool_call_id=first.id, tool_result=str(exc)
            )
        )
        return await _reject_answer(session, totals, structured, str(exc), first.id)
    state.add_tool_result(first.id, "accepted")
    await events.emit(
        AgentEvent("tool_end", tool_name=first.name, tool_call_id=first.id, tool_result="accepted")
    )
    totals.last_text = first.arguments
    await events.emit(
        AgentEvent(
            "turn_complete",
            content=first.arguments,
            usage=dict(totals.usage),
            finish_reason="tool_calls",
        )
    )
    await session._persist()
    return RunEnds("completed")


async def _reject_answer(
    session: Session,
    totals: _RunTotals,
    structured: _Structured,
    problem: str,
    call_id: str | None,
) -> RunEnds | None:
    """Tell the model its answer was not accepted, or end the run once it has tried enough."""
    structured.attempts += 1
    message = feedback(problem, structured.spec, structured.mode)
    if call_id is not None:
        session.state.add_tool_result(call_id, message)
    if structured.attempts > structured.spec.retries:
        await session._persist()
        return RunEnds(
            "error",
            f"the answer did not match the output type after {structured.attempts} "
            f"attempts: {problem}",
        )
    if call_id is None:
        session.state.add_user_message(message)
    await session._persist()
    return None


async def _check_output(session: Session, result: RunResult) -> None:
    """Run the output guardrails on a completed result; a blocked one becomes an error."""
    guards = session.agent.output_guardrails
    if not guards:
        return
    try:
        verdict = await check_guardrails(guards, result)
    except HookFailed as exc:
        result.status, result.error = "error", str(exc)
        return
    if verdict is not None:
        result.blocked_by, reason = verdict
        result.status = "error"
        result.error = f"blocked by output guardrail {result.blocked_by}: {reason}"
        result.text, result.output = "", None


_CANCELLED = object()


async def _cancellable(control: RunControl, work: Callable[[], Awaitable[Any]]) -> Any:
    """Await ``work()`` where ``control.cancel`` (a handle's cancel, the run's
    deadline) reaches it; ``_CANCELLED`` if it was cancelled. For user code
    that runs outside the run's own scope (guardrails, ``on_run_end``)."""
    scope = trio.CancelScope(deadline=control.scope.deadline)
    control.scope = scope
    if control.cancel_reason is not None:
        scope.cancel(reason=control.cancel_reason)
    with scope:
        return await work()
    return _CANCELLED


async def _check_input(session: Session, prompt: str, totals: _RunTotals) -> str | None:
    """Run the input guardrails on a new prompt: why it is blocked, or None."""
    guards = session.agent.input_guardrails
    try:
        verdict = await check_guardrails(guards, prompt)
    except HookFailed as exc:
        return str(exc)
    if verdict is None:
        return None
    totals.blocked_by, reason = verdict
    return f"blocked by input guardrail {totals.blocked_by}: {reason}"


async def _account(session: Session, events: Events, totals: _RunTotals, turn: ModelTurn) -> None:
    usage: dict[str, Number] = dict(turn.usage) or {"api_calls": 1}
    if not turn.usage_known:
        # The server reported nothing: say so, and keep an estimate apart from
        # the real counts instead of adding a zero that looks measured.
        produced = len(turn.text) + sum(len(c.name) + len(c.arguments) for c in turn.tool_calls)
        usage["calls_without_usage"] = 1
        usage["estimated_tokens"] = session.context_tokens() + produced // 4
    add_usage(totals.usage, usage)
    session.state.update_usage(**usage)
    if "input_tokens" in usage:
        session.state.report_context_tokens(int(usage["input_tokens"]))
    await events.emit(AgentEvent("api_call_complete", usage=dict(usage)))


async def _compact(session: Session, events: Events, trigger: str) -> CompactResult | None:
    """Compact inside a run; a failure leaves history untouched and is reported."""
    try:
        return await compact_now(session, events.emit, trigger, None)
    except CompactionFailed as exc:
        await events.emit(AgentEvent("error", content=str(exc)))
        return None


class CompactionFailed(Exception):
    """The summary request failed; the history was left as it was."""


async def compact_now(
    session: Session,
    emit: Callable[[AgentEvent], Awaitable[None]],
    trigger: str,
    instructions: str | None,
) -> CompactResult:
    """Summarise older history into one message; shared by auto and manual compaction.

    The history is only replaced once the summary has arrived, so a failure
    or a cancel leaves it untouched. The compaction is persisted before
    returning, so a resume restores the compacted history.
    """
    state = session.state
    services = session._require_services()
    settings = session._model_settings()
    if session.compaction_model is not None:
        settings = attrs.evolve(settings, model=session.compaction_model)
    client = ModelClient(services.clients, settings)
    await emit(AgentEvent("compact_start"))
    try:
        done = await summarise(
            client,
            state,
            instructions=instructions,
            trigger=trigger,
            overhead=session.schema_tokens(),
        )
    except (ModelError, ValueError) as exc:
        raise CompactionFailed(f"compaction failed: {exc}") from exc
    if done is None:
        tokens = session.context_tokens()
        result = CompactResult("", tokens, tokens, trigger)
    else:
        result, usage = done
        state.update_usage(**usage)
    session._compacted_at = len(state.messages)
    await emit(AgentEvent("compact_end", content=result.summary))
    await session._persist()
    return result


def _batches(calls: list[ToolCall], session: Session) -> list[list[ToolCall]]:
    """Group consecutive read-only calls so they can run in parallel."""
    batches: list[list[ToolCall]] = []
    last_parallel = False
    for call in calls:
        handler = session.tool(call.name)
        parallel = (
            handler is not None and handler.readonly and not session.needs_approval(handler, call)
        )
        if parallel and last_parallel:
            batches[-1].append(call)
        else:
            batches.append([call])
        last_parallel = parallel
    return batches


async def _run_tools(
    session: Session,
    events: Events,
    totals: _RunTotals,
    control: RunControl,
    calls: list[ToolCall],
    max_tools: int | None,
) -> Step:
    """Execute one turn's tool calls; the run ends here if a limit or a pause says so."""
    state = session.state
    for batch in _batches(calls, session):
        if max_tools is not None and totals.tool_executions + len(batch) > max_tools:
            state.close_dangling_tool_calls(
                f"[not executed: the run reached its limit of {max_tools} tool executions]"
            )
            return RunEnds("error", f"max tool executions ({max_tools}) reached")
        totals.tool_executions += len(batch)
        if len(batch) == 1:
            step = await _run_one(session, events, control, batch[0], totals)
            if isinstance(step, RunEnds):
                return step
            if totals.fatal is not None:
                return _end_fatal(state, totals.fatal)
            continue
        outputs: list[ToolOutput | None] = [None] * len(batch)
        failures: list[CallbackFailed] = []
        async with trio.open_nursery() as nursery:
            for index, call in enumerate(batch):
                nursery.start_soon(
                    _invoke_into,
                    session,
                    events,
                    call,
                    outputs,
                    index,
                    failures,
                    nursery.cancel_scope,
                    totals,
                )
        if failures:
            raise failures[0]
        for call, output in zip(batch, outputs, strict=True):
            assert output is not None
            state.add_tool_result(call.id, output.content)
        if totals.fatal is not None:
            return _end_fatal(state, totals.fatal)
    return GO_ON


def _end_fatal(state: State, message: str) -> RunEnds:
    state.close_dangling_tool_calls("[not executed: the run ended after a sandbox failure]")
    return RunEnds("error", message)


async def _invoke_into(
    session: Session,
    events: Events,
    call: ToolCall,
    outputs: list[ToolOutput | None],
    index: int,
    failures: list[CallbackFailed],
    batch_scope: trio.CancelScope,
    totals: _RunTotals,
) -> None:
    try:
        outputs[index] = await _invoke(session, events, call, totals)
    except CallbackFailed as exc:
        # Recorded and re-raised by the caller after the batch, so it does
        # not arrive wrapped in an exception group.
        failures.append(exc)
        batch_scope.cancel(reason="an on_event callback failed")


async def _run_one(
    session: Session,
    events: Events,
    control: RunControl,
    call: ToolCall,
    totals: _RunTotals,
) -> Step:
    handler = session.tool(call.name)
    if handler is not None and session.needs_approval(handler, call):
        verdict = await _await_approval(session, events, control, call)
        if verdict == "paused":
            return RunEnds("paused")
        if verdict is not True:
            await _deny(session, events, call, verdict)
            return GO_ON
    await _execute(session, events, call, totals)
    return GO_ON


async def _execute(session: Session, events: Events, call: ToolCall, totals: _RunTotals) -> None:
    """Run one call and record its result."""
    output = await _invoke(session, events, call, totals)
    session.state.add_tool_result(call.id, output.content)
    # Each answered call is committed at once: a crash later in the turn
    # keeps it, so recovery only re-answers the calls that never finished.
    await session._persist()


async def _invoke(
    session: Session, events: Events, call: ToolCall, totals: _RunTotals | None = None
) -> ToolOutput:
    args = _parse_args_for_event(call.arguments)
    await events.emit(
        AgentEvent("tool_start", tool_name=call.name, tool_call_id=call.id, tool_args=args)
    )
    services = session._require_services()
    ctx = ToolContext(
        session_id=session.state.session_id,
        call_id=call.id,
        working_dir=session.working_dir,
        profile=session.profile,
        delegation=session._delegation(),
        sandbox=session._sandbox_capability(),
        mcp=session._mcp_capability(),
    )
    handler = session.tool(call.name)
    if handler is None and not session.profile.allows_tool(call.name):
        output = ToolOutput(
            content=f"tool {call.name!r} is disabled by profile {session.profile.name!r}",
            is_error=True,
        )
    else:
        with span("rho_actors.tool_call", session_id=session.id, tool=call.name) as tool_span:
            output = await services.registry.invoke(handler, call.name, call.arguments, ctx)
            set_attributes(tool_span, is_error=output.is_error)
    if session._observability is not None and totals is not None:
        session._observability.tool_call(
            totals.run,
            call.name,
            float(output.metadata.get("duration_ms", 0.0)),
            output.is_error,
            output.content[:500] if output.is_error else None,
        )
    if output.metadata.get("exception") == "SandboxError" and totals is not None:
        # The sandbox is unreachable or gone: another tool call would fail the
        # same way, so the run ends with this error (after the call is answered).
        totals.fatal = output.content
    limit = session.profile.max_output_chars
    if len(output.content) > limit:
        # Every tool's result, custom ones included, reaches the model capped
        # the way the built-in tools cap theirs.
        output = attrs.evolve(
            output,
            content=truncate_middle(output.content, limit),
            metadata={**output.metadata, "truncated_chars": len(output.content) - limit},
        )
    child_usage = output.metadata.get("child_usage")
    if isinstance(child_usage, dict) and child_usage:
        # A delegated child's tokens count as this session's.
        session.state.update_usage(**child_usage)
        if totals is not None:
            add_usage(totals.usage, child_usage)
    await events.emit(
        AgentEvent(
            "tool_end",
            tool_name=call.name,
            tool_call_id=call.id,
            tool_result=output.content,
            tool_metadata={**output.metadata, "is_error": output.is_error},
        )
    )
    return output


async def _deny(session: Session, events: Events, call: ToolCall, reason: str) -> None:
    await events.emit(
        AgentEvent(
            "tool_blocked",
            tool_name=call.name,
            tool_call_id=call.id,
            tool_args=_parse_args_for_event(call.arguments),
            content=reason,
        )
    )
    session.state.add_tool_result(call.id, DENIED_RESULT.format(reason=reason))


async def _await_approval(
    session: Session, events: Events, control: RunControl, call: ToolCall
) -> Literal[True] | str:
    """Wait for a decision on ``call``: True, "paused", or the denial reason.

    The decision always arrives as an ``ApprovalDecision`` message (from the
    callback, from ``session.approve``/``deny``, or from another task), so
    the actor's mailbox keeps flowing while we wait.
    """
    args = _parse_args_for_event(call.arguments)
    await events.emit(
        AgentEvent("approval_request", tool_name=call.name, tool_call_id=call.id, tool_args=args)
    )
    callback = session.approval_callback
    if callback is None:
        if session.auto_approve:
            return True
        return await _pause(session, events, control, call, args)

    decision = control.decisions[call.id] = _Decision()
    interrupted = False

    async def ask_callback() -> None:
        nonlocal interrupted
        try:
            answer = callback(call.name, args)
            if inspect.isawaitable(answer):
                answer = await answer
            approved, reason = approval_answer(answer)
            session.decide(call.id, approved, reason)
        except ApprovalInterrupt:
            interrupted = True
            decision.event.set()
        except Exception as exc:
            # A broken callback fails closed: the call is denied, the run goes on.
            session.decide(call.id, False, f"approval callback raised {type(exc).__name__}: {exc}")

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask_callback)
            with trio.move_on_after(session.approval_timeout):
                await decision.event.wait()
            nursery.cancel_scope.cancel(reason="approval decided")
    finally:
        control.decisions.pop(call.id, None)
    if interrupted:
        control.interruption_sent = True
        await events.emit(
            AgentEvent(
                "interruption",
                content=f"approval required for {call.name}",
                tool_name=call.name,
                tool_call_id=call.id,
                tool_args=args,
            )
        )
        return await _pause(session, events, control, call, args)
    if not decision.event.is_set():
        return f"no approval decision within {session.approval_timeout:g} s"
    if decision.approved:
        return True
    return decision.reason or "denied"


def approval_answer(answer: object) -> tuple[bool, str | None]:
    """What an approval callback's answer means: only ``True`` approves.

    Anything else denies, and the denial says what came back: ``False``,
    ``None``, ``"no"``, ``{"approved": False}``, ``1``... A callback that
    truthy-approves by accident (a non-empty string, a dict) fails closed.
    """
    if answer is True:
        return True, None
    if answer is False:
        return False, "denied by approval callback"
    shown = repr(answer)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return False, f"denied: the approval callback answered {shown} (only True approves)"


async def _pause(
    session: Session,
    events: Events,
    control: RunControl,
    call: ToolCall,
    args: Mapping[str, Any],
) -> str:
    pending = PendingApproval(tool_call_id=call.id, tool_name=call.name, tool_args=dict(args))
    session.state.add_pending_approval(pending)
    control.paused.append(pending)
    return "paused"


async def _answer_pending(
    session: Session, events: Events, totals: _RunTotals, control: RunControl
) -> Step:
    """Resume a paused turn: run approved calls, report denied ones, re-pause undecided ones."""
    state = session.state
    decided = session._take_decisions()
    for raw in state.unanswered_tool_calls():
        call = ToolCall(
            id=str(raw.get("id")),
            name=str(raw.get("function", {}).get("name", "")),
            arguments=str(raw.get("function", {}).get("arguments", "")),
        )
        pending = next((p for p in state.pending_approvals if p.tool_call_id == call.id), None)
        if pending is not None:
            if call.id not in decided:
                control.paused.append(pending)
                continue
            approved, reason = decided[call.id]
            state.resolve_approval(call.id, approved, reason)
            if not approved:
                await _deny(session, events, call, reason or "denied")
                continue
            totals.tool_executions += 1
            await _execute(session, events, call, totals)
        else:
            step = await _run_one(session, events, control, call, totals)
            if isinstance(step, RunEnds):
                return step
    if control.paused:
        return RunEnds("paused")
    await session._persist()
    return GO_ON


async def _finish(
    session: Session,
    events: Events,
    totals: _RunTotals,
    status: RunStatus,
    error: str | None,
    control: RunControl,
) -> RunResult:
    """Close the run the same way whatever ended it."""
    state = session.state
    if control.paused and status == "completed":
        status = "paused"
    if status == "paused":
        paused_ids = {p.tool_call_id for p in control.paused}
        # Calls after the paused one in the same turn are not executed now;
        # they wait with it (answered when the run resumes).
        if not control.interruption_sent:
            with contextlib.suppress(CallbackFailed):
                await events.emit(
                    AgentEvent(
                        "interruption",
                        content="paused: waiting for approval of " + ", ".join(sorted(paused_ids)),
                    )
                )
    else:
        reason = {
            "cancelled": CANCELLED_RESULT,
        }.get(status, f"[not executed: the run ended with status {status}]")
        state.close_dangling_tool_calls(reason)
    try:
        if status == "cancelled":
            await events.emit(AgentEvent("cancelled", content=control.cancel_reason or "cancelled"))
        elif status == "error" and error:
            await events.emit(AgentEvent("error", content=error))
    except CallbackFailed as exc:
        if status != "cancelled":
            status, error = "error", str(exc)
    result = RunResult(
        text=totals.last_text,
        events=events.events,
        status=status,
        usage=dict(totals.usage),
        error=error,
        cancel_reason=control.cancel_reason if status == "cancelled" else None,
        pending_approvals=list(control.paused) if status == "paused" else [],
        turns=totals.turns,
        truncated=totals.truncated and status == "completed",
        output=totals.output,
        blocked_by=totals.blocked_by,
        run_id=totals.run_id,
    )
    if result.status == "completed" and session.agent.output_guardrails:
        vetted = await _cancellable(control, lambda: _check_output(session, result))
        if vetted is _CANCELLED:
            # Cancelled before the answer was vetted: it is not given out.
            result.status, result.text, result.output = "cancelled", "", None
            result.cancel_reason = control.cancel_reason or "deadline exceeded"
    if events.hooks:
        with trio.move_on_after(RUN_END_HOOK_TIMEOUT) as hook_scope:
            try:
                await events.hook("on_run_end", result)
            except CallbackFailed as exc:
                result.status = "error"
                result.error = str(exc) if result.error is None else f"{result.error}; {exc}"
        if hook_scope.cancelled_caught:
            # Bounded: the final records must still go out in time.
            late = f"an on_run_end hook did not return within {RUN_END_HOOK_TIMEOUT:g} s"
            result.status = "error"
            result.error = late if result.error is None else f"{result.error}; {late}"
    session._paused_output = (
        totals.structured.spec
        if totals.structured is not None and result.status == "paused"
        else None
    )
    state.finish_run(
        status=result.status,
        usage=totals.usage,
        error=result.error,
        cancel_reason=result.cancel_reason,
    )
    control.result = result
    observability = session._observability
    if observability is not None:
        observability.run_finished(totals.run, result, totals.started_at)
    # Final records go out even when the run was cancelled, bounded so a
    # stuck store cannot hold the caller.
    session._current_tool = None
    with trio.move_on_after(FINAL_WRITE_TIMEOUT, shield=True):
        try:
            await session._persist(run_finished=True)
            if observability is not None:
                await observability.flush()
        except StoreError as exc:
            # What the store refused is lost; what it already acknowledged stays.
            result.status = "error"
            result.error = str(exc) if result.error is None else f"{result.error}; {exc}"
    return result
