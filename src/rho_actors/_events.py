"""Events a run emits, and the results it returns.

Events are small frozen records. A session fans each event out to its
``on_event`` callbacks and to any open event streams; the run's
:class:`RunResult` keeps the whole list.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from ._records import Number

EventType = Literal[
    "text",
    "tool_start",
    "tool_end",
    "tool_blocked",
    "approval_request",
    "api_call_complete",
    "turn_complete",
    "compact_start",
    "compact_end",
    "error",
    "cancelled",
    "interruption",
    "retry",
    "run_end",
]

EVENT_TYPES: frozenset[str] = frozenset(EventType.__args__)  # type: ignore[attr-defined]

RunStatus = Literal["completed", "error", "cancelled", "paused"]


@attrs.frozen(slots=True)
class AgentEvent:
    """One thing that happened during a run.

    Which fields are set depends on ``type`` (see the README's event table);
    the rest are ``None``. ``approval_request`` carries the call waiting for a
    decision in ``tool_name``/``tool_call_id``/``tool_args``.
    """

    type: str
    content: str | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    tool_args: dict[str, Any] | None = None
    tool_result: str | None = None
    tool_metadata: dict[str, Any] | None = None
    usage: dict[str, Number] | None = None
    finish_reason: str | None = None
    """On ``turn_complete``: why the model stopped (``"length"``: cut off)."""
    result: RunResult | None = None
    """On ``run_end`` (the last event of a run's own stream): the run's result."""
    seq: int | None = None
    """The event's 1-based position in its run, on events read from a run's own
    stream (``handle.events()``, ``session.attach``); None elsewhere."""

    def with_seq(self, seq: int) -> AgentEvent:
        return attrs.evolve(self, seq=seq)


@attrs.frozen(kw_only=True, slots=True)
class PendingApproval:
    """A tool call held until someone approves or denies it."""

    tool_call_id: str
    tool_name: str
    tool_args: Mapping[str, Any]


@attrs.define(kw_only=True, slots=True)
class RunResult:
    """What ``session.run()`` returns.

    ``status`` is ``completed``, ``error``, ``cancelled`` or ``paused``; a
    paused run lists the calls waiting for a decision in ``pending_approvals``
    and ``error``/``cancel_reason`` say why a run did not complete. In
    ``usage``, ``calls_without_usage`` counts model calls whose server
    reported no usage (the token counts miss them) and ``estimated_tokens``
    is a character-based estimate of what those calls used.
    """

    text: str
    events: list[AgentEvent]
    status: RunStatus
    usage: dict[str, Number]
    error: str | None = None
    cancel_reason: str | None = None
    pending_approvals: list[PendingApproval] = attrs.field(factory=list)
    turns: int = 0
    truncated: bool = False
    """The final answer was cut off at the token limit (``finish_reason: length``)."""
    output: Any = None
    """The structured answer (an instance of the run's ``output_type``), if one was asked for."""
    blocked_by: str | None = None
    """The guardrail that blocked the prompt or the answer (then ``status="error"``)."""
    run_id: str | None = None
    """The handle id of a run started with ``session.start`` (None for ``run()``)."""


@attrs.frozen(slots=True)
class CompactResult:
    """What a compaction did: the summary and the context size before and after."""

    summary: str
    tokens_before: int
    tokens_after: int
    trigger: str  # "auto" or "manual"


class ApprovalInterrupt(Exception):  # the seed API's name, hence no "Error" suffix
    """Raised by an approval callback to stop and pause the run.

    The run returns ``status="paused"`` with the call still pending, to be
    approved or denied later (also from another process, via the store).
    """
