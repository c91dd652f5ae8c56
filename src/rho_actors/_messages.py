"""The messages a Session actor accepts.

They form a closed union (:data:`SessionMessage`); the actor dispatches with
``match`` and ``assert_never``, so adding a message without handling it is a
type error. Requests that expect an answer carry their own :class:`Reply`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from ._actor import Reply
from ._cancel import CancellationToken
from ._events import AgentEvent, CompactResult, RunResult

EventCallback = Callable[[AgentEvent], Any]


class EventLog(Protocol):
    """Where a run started with a handle keeps its events (``_session._handle.RunLog``)."""

    id: str
    events: list[AgentEvent]
    started: bool

    def changed(self) -> None: ...


@attrs.frozen(kw_only=True, slots=True)
class Prompt:
    """Run a prompt to completion (or resume a paused run when ``prompt`` is None)."""

    prompt: str | None
    reply: Reply[RunResult] | None
    run_id: int = 0
    on_event: EventCallback | None = None
    cancel_check: Callable[[], bool] | None = None
    token: CancellationToken | None = None
    # Per-run overrides of the model client's settings (ModelSettings fields).
    settings: Mapping[str, Any] | None = None
    # A run started with a handle: its events go here as they happen.
    log: EventLog | None = None
    # Cancel the run in flight and run this one next (sent on the control channel).
    interrupt: bool = False
    # Per-run structured output and hooks (see rho_actors._output, _hooks).
    output: Any = None


@attrs.frozen(kw_only=True, slots=True)
class Cancel:
    """Cancel the run in flight, if any. Never sticky: a later run starts clean.

    With ``run_id`` it cancels only that run: the one in flight if it matches,
    or the queued prompt with that id; otherwise nothing.
    """

    reason: str = "cancelled"
    run_id: int | None = None


@attrs.frozen(kw_only=True, slots=True)
class ApprovalDecision:
    """Approve or deny a tool call that is waiting for a decision."""

    tool_call_id: str
    approved: bool
    reason: str | None = None


@attrs.frozen(kw_only=True, slots=True)
class Reconfigure:
    """Change settings of a live session; applied at the next turn, never mid-tool."""

    changes: dict[str, Any]
    reply: Reply[None] | None = None


@attrs.frozen(kw_only=True, slots=True)
class CompactRequest:
    """Compact the history now (``trigger="manual"``)."""

    instructions: str | None
    reply: Reply[CompactResult]


@attrs.frozen(kw_only=True, slots=True)
class Stop:
    """Finish the run in flight (or cancel it after ``grace``), then stop."""

    grace: float | None = None
    reply: Reply[None] | None = None
    # Stop only if nothing is in flight, queued or waiting (how the ambient
    # host lets go of a standalone session); otherwise ignored.
    if_idle: bool = False


@attrs.frozen(kw_only=True, slots=True)
class Hibernate:
    """Stop the actor and free the session's memory, if it is still idle.

    Sent by the supervisor's idle sweep (``hibernate_after``) or
    :meth:`Supervisor.hibernate_idle`; ignored while anything is in flight,
    queued or watching the session.
    """


SessionMessage = (
    Prompt | Cancel | ApprovalDecision | Reconfigure | CompactRequest | Stop | Hibernate
)
