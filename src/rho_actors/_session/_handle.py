"""Run handles: a run started in the background, its status, its result and its events.

``session.start(prompt)`` queues the run like ``run()`` does and returns a
:class:`RunHandle` at once. The handle holds the run's :class:`RunLog`, the
list the run appends its events to (the same list that becomes
``RunResult.events``), so any number of readers can follow the run, join
late and replay from any position without the run keeping anything more.

The handle learns how the run ended from the actor's reply: the reply is a
:class:`LogReply`, which settles the log in the same synchronous step in
which the actor answers. Whatever stops the actor, it answers every request
(see ``SessionActor``), so every handle ends and every reader gets its final
``run_end`` event.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import trio

from .. import _records as r
from .._actor import NoPublicConstructor, Reply
from .._cancel import CancellationToken
from .._errors import RhoError
from .._events import AgentEvent, PendingApproval, RunResult
from .._store._backend import pid_alive

logger = logging.getLogger("rho_actors.session")

HandleStatus = Literal["queued", "running", "completed", "error", "cancelled", "paused"]

# How many finished runs a session keeps addressable for ``attach`` from
# memory (older ones are replayed from the store).
REMEMBERED_RUNS = 16


def new_run_id() -> str:
    return "run_" + uuid.uuid4().hex[:16]


class RunLog:
    """One run's events as they happen, and how it ended."""

    __slots__ = ("_lot", "_watchers", "error", "events", "id", "result", "started")

    def __init__(self, run_id: str) -> None:
        self.id = run_id
        self.events: list[AgentEvent] = []
        self.started = False
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._lot = trio.lowlevel.ParkingLot()
        self._watchers: list[Callable[[], None]] | None = None

    def on_finish(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` (synchronously) when the run ends; at once if it has."""
        if self.finished:
            callback()
        else:
            if self._watchers is None:
                self._watchers = []
            self._watchers.append(callback)

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    def changed(self) -> None:
        """An event was appended (by the run's ``Events``): wake the readers."""
        if self._lot:
            self._lot.unpark_all()

    def finish(self, result: RunResult | None, error: BaseException | None) -> None:
        if self.finished:
            return
        self.result = result
        self.error = error if result is None else None
        if self.result is None and self.error is None:
            self.error = RhoError("the run ended without a result")
        self._lot.unpark_all()
        watchers, self._watchers = self._watchers or [], None
        for callback in watchers:
            # Called inside the actor as it answers: a callback that raises
            # must not crash the actor (or the supervisor stopping it).
            try:
                callback()
            except Exception:
                logger.exception("run %s: an on_finish callback raised", self.id)

    async def wait_finished(self) -> None:
        while not self.finished:
            await self._lot.park()

    async def wait_for_more(self, seen: int) -> None:
        """Return once there are more than ``seen`` events, or the run ended."""
        while len(self.events) <= seen and not self.finished:
            await self._lot.park()

    def final_result(self) -> RunResult:
        """The result a ``run_end`` event carries (a failed run's error as a result)."""
        if self.result is not None:
            return self.result
        return RunResult(
            text="",
            events=list(self.events),
            status="error",
            usage={},
            error=f"{type(self.error).__name__}: {self.error}",
        )


class LogReply(Reply[RunResult]):
    """The reply of a run started with a handle: settling it settles the run's log."""

    __slots__ = ("_log", "_on_settled")

    def __init__(self, log: RunLog, on_settled: Callable[[], None]) -> None:
        super().__init__()
        self._log = log
        self._on_settled: Callable[[], None] | None = on_settled

    def send(self, value: RunResult) -> None:
        super().send(value)
        self._settle(value, None)

    def fail(self, error: BaseException) -> None:
        super().fail(error)
        self._settle(None, error)

    def drop(self) -> None:
        super().drop()
        self._settle(None, RhoError("the session dropped the run before it started"))

    def _settle(self, result: RunResult | None, error: BaseException | None) -> None:
        settled, self._on_settled = self._on_settled, None
        try:
            self._log.finish(result, error)
        finally:
            if settled is not None:
                settled()


def run_end_event(log: RunLog) -> AgentEvent:
    result = log.final_result()
    return AgentEvent("run_end", content=result.status, result=result, seq=len(log.events) + 1)


class RunHandle(metaclass=NoPublicConstructor):
    """A run started with ``session.start()`` (or ``sup.dispatch()``).

    ``status`` is ``queued`` until the actor takes the run, ``running``, then
    the run's final status. ``cancel()`` is synchronous, so cleanup code that
    runs during a cancellation (where nothing can be awaited) can use it.
    """

    __slots__ = ("_log", "_session", "_token", "prompt")

    def __init__(self, session: Any, log: RunLog, token: CancellationToken, prompt: str | None):
        self._session = session
        self._log = log
        self._token = token
        self.prompt = prompt

    @property
    def id(self) -> str:
        """The run's id: persisted with the run, so ``session.attach(id)`` finds it
        in the store after this process is gone."""
        return self._log.id

    @property
    def session(self) -> Any:
        return self._session

    @property
    def session_id(self) -> str:
        return str(self._session.id)

    @property
    def status(self) -> HandleStatus:
        log = self._log
        if log.result is not None:
            return log.result.status
        if log.error is not None:
            return "error"
        return "running" if log.started else "queued"

    def done(self) -> bool:
        return self._log.finished

    @property
    def result(self) -> RunResult | None:
        """The result once the run ended (None before)."""
        return self._log.result

    async def wait(self) -> RunResult:
        """The run's result; a failure of the machinery (the actor crashed) is raised."""
        await self._log.wait_finished()
        if self._log.error is not None:
            raise self._log.error
        assert self._log.result is not None
        return self._log.result

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the run: a queued run never starts, a running one ends ``cancelled``."""
        self._token.cancel(reason)

    def on_finish(self, callback: Callable[[RunHandle], None]) -> None:
        """Call ``callback(handle)`` synchronously when the run ends (at once if it has)."""
        self._log.on_finish(lambda: callback(self))

    def events(self, after_seq: int = 0) -> RunEvents:
        """This run's events from position ``after_seq`` on (every event so far is
        replayed first), ending with a ``run_end`` event that carries the result."""
        return RunEvents._create(self._log, after_seq, None)

    def __repr__(self) -> str:
        return f"RunHandle(id={self.id!r}, session={self.session_id!r}, status={self.status!r})"


class RunEvents(metaclass=NoPublicConstructor):
    """``async for event in handle.events()``: one run's events, numbered.

    Each event carries ``seq``, its 1-based position in the run; pass the
    last ``seq`` seen to ``events(after_seq=...)`` or ``session.attach`` to
    go on from there. The last event is ``run_end`` (``event.result``).
    Used as ``async with``, leaving the block early cancels the run when
    the stream was opened with ``cancel_on_exit`` (``session.stream``).
    """

    __slots__ = ("_cancel", "_ended", "_log", "_seen")

    def __init__(self, log: RunLog, after_seq: int, cancel: Callable[[str], None] | None) -> None:
        if after_seq < 0:
            raise ValueError(f"after_seq must be 0 or more, got {after_seq}")
        self._log = log
        self._seen = after_seq
        self._ended = False
        self._cancel = cancel

    def __aiter__(self) -> RunEvents:
        return self

    async def __anext__(self) -> AgentEvent:
        if self._ended:
            raise StopAsyncIteration
        log = self._log
        await log.wait_for_more(self._seen)
        if self._seen < len(log.events):
            event = log.events[self._seen]
            self._seen += 1
            return event.with_seq(self._seen)
        self._ended = True
        return run_end_event(log)

    async def __aenter__(self) -> RunEvents:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._log.finished and self._cancel is not None:
            self._cancel("the stream's reader left")


class RunStream(metaclass=NoPublicConstructor):
    """``session.stream(prompt)``: starts the run on first use, then reads its events."""

    __slots__ = ("_events", "_handle", "_options", "_prompt", "_session")

    def __init__(self, session: Any, prompt: str, options: dict[str, Any]) -> None:
        self._session = session
        self._prompt = prompt
        self._options = options
        self._handle: RunHandle | None = None
        self._events: RunEvents | None = None

    @property
    def handle(self) -> RunHandle | None:
        """The run's handle, once started (its id is what a client re-attaches with)."""
        return self._handle

    async def _started(self) -> RunEvents:
        if self._events is None:
            handle = await self._session.start(self._prompt, **self._options)
            self._handle = handle
            self._events = RunEvents._create(handle._log, 0, handle.cancel)
        return self._events

    def __aiter__(self) -> RunStream:
        return self

    async def __anext__(self) -> AgentEvent:
        return await (await self._started()).__anext__()

    async def __aenter__(self) -> RunStream:
        await self._started()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._events is not None:
            await self._events.__aexit__(*exc)


# How often a run replayed from the store is re-read for new records.
STORED_RUN_POLL_INTERVAL = 0.25


async def stored_run_events(
    store: Any, session_id: str, run_id: str, after_seq: int
) -> AsyncIterator[AgentEvent]:
    """A run's events rebuilt from the trace, then followed as records arrive.

    The trace holds what is durable: the prompt, each assistant message
    (``text``, whole), its tool calls (``tool_start``) and results
    (``tool_end``), approval requests, compactions and how the run ended.
    Text deltas, retries and per-call usage are not persisted.
    """
    if after_seq < 0:
        raise ValueError(f"after_seq must be 0 or more, got {after_seq}")
    replay = StoredRun(run_id)
    sent = 0
    while True:
        replay.feed(await store.arecords(session_id))
        if not replay.found:
            raise RhoError(
                f"no run {run_id!r} in the session's trace",
                session_id=session_id,
                operation="attach",
            )
        while sent < len(replay.events):
            event = replay.events[sent]
            sent += 1
            if sent > after_seq:
                yield event.with_seq(sent)
        if replay.result is None and not await _still_running(store, session_id):
            replay.interrupted()
        if replay.result is not None:
            if sent + 1 > after_seq:
                yield AgentEvent(
                    "run_end", content=replay.result.status, result=replay.result, seq=sent + 1
                )
            return
        await trio.sleep(STORED_RUN_POLL_INTERVAL)


async def _still_running(store: Any, session_id: str) -> bool:
    """False once the session's meta shows its run can no longer end by itself:
    marked interrupted, or running in a process on this machine that is gone.
    (A PostgreSQL store's writer may be on another machine: its pid says
    nothing here, so only the trace or a recovery ends the replay.)"""
    meta = await store.aread_meta(session_id)
    if not isinstance(meta, dict):
        return True
    status = meta.get("status")
    if status == "interrupted":
        return False
    pid = meta.get("pid")
    local = not str(getattr(store, "location", "")).startswith("postgres")
    return not (status == "running" and local and isinstance(pid, int) and not pid_alive(pid))


class StoredRun:
    """Rebuilds one run's durable events from trace records, fed incrementally."""

    __slots__ = (
        "_last_seq",
        "_pending",
        "_text",
        "_tool_names",
        "_turns",
        "events",
        "found",
        "result",
        "run_id",
    )

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.found = False
        self.events: list[AgentEvent] = []
        self.result: RunResult | None = None
        self._last_seq = -1
        self._tool_names: dict[str, str] = {}
        self._pending: dict[str, PendingApproval] = {}
        self._text = ""
        self._turns = 0

    def feed(self, envelopes: list[r.Envelope]) -> None:
        for envelope in envelopes:
            if envelope.seq <= self._last_seq:
                continue
            self._last_seq = envelope.seq
            record = envelope.record
            if not self.found:
                self.found = isinstance(record, r.RunStarted) and record.run_id == self.run_id
            elif self.result is None:
                self._add(record)

    def _add(self, record: r.Record) -> None:
        match record:
            case r.MessageAppended(message=message):
                self._message(message)
            case r.ApprovalRequested():
                self._pending[record.tool_call_id] = PendingApproval(
                    tool_call_id=record.tool_call_id,
                    tool_name=record.tool_name,
                    tool_args=record.tool_args,
                )
                self.events.append(
                    AgentEvent(
                        "approval_request",
                        tool_name=record.tool_name,
                        tool_call_id=record.tool_call_id,
                        tool_args=record.tool_args,
                    )
                )
            case r.ApprovalDecided():
                self._pending.pop(record.tool_call_id, None)
            case r.Compacted():
                self.events.append(AgentEvent("compact_end", content=record.summary))
            case r.RunFinished():
                self.result = RunResult(
                    text=self._text,
                    events=list(self.events),
                    status=record.status,  # type: ignore[arg-type]
                    usage=dict(record.usage),
                    error=record.error,
                    cancel_reason=record.cancel_reason,
                    pending_approvals=list(self._pending.values())
                    if record.status == "paused"
                    else [],
                    turns=self._turns,
                    run_id=self.run_id,
                )
            case r.RunStarted() | r.StatusChanged(status="interrupted"):
                # No end of its own: its process stopped mid-run (the session
                # was recovered, or went on with another run).
                self.interrupted()
            case _:
                pass

    def interrupted(self) -> None:
        """End the replay of a run whose process stopped before it finished."""
        if self.result is None:
            self.result = RunResult(
                text=self._text,
                events=list(self.events),
                status="error",
                usage={},
                error="interrupted: the process running it stopped before it finished",
                turns=self._turns,
                run_id=self.run_id,
            )

    def _message(self, message: dict[str, Any]) -> None:
        role = message.get("role")
        if role == "assistant":
            self._turns += 1
            content = message.get("content")
            if isinstance(content, str) and content:
                self._text = content
                self.events.append(AgentEvent("text", content=content))
            for call in message.get("tool_calls") or ():
                function = call.get("function") or {}
                name = str(function.get("name", ""))
                self._tool_names[call.get("id", "")] = name
                self.events.append(
                    AgentEvent(
                        "tool_start",
                        tool_name=name,
                        tool_call_id=call.get("id"),
                        tool_args=_args(function.get("arguments")),
                    )
                )
        elif role == "tool":
            call_id = message.get("tool_call_id")
            content = message.get("content")
            self.events.append(
                AgentEvent(
                    "tool_end",
                    tool_name=self._tool_names.get(str(call_id)),
                    tool_call_id=call_id,
                    tool_result=content if isinstance(content, str) else str(content),
                )
            )


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except ValueError:
        return {"_raw": raw}
    return value if isinstance(value, dict) else {"_raw": raw}
