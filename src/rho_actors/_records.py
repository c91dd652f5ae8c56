"""Trace records and session meta: what a session persists, and the one converter for both.

A trace is a sequence of records, one JSON object per line::

    {"ts": 1763712000.123, "seq": 7, "type": "message", "message": {...}}

``seq`` is a per-session sequence number; replaying the records in order
rebuilds the session's :class:`~rho_actors.State` exactly. Records are
append-only: a compaction does not rewrite history, it appends a record
holding the new message list, so the original stays in the trace for audit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
import cattrs

from ._errors import StoreError

# A usage counter: tokens and calls are ints, money (``cost_usd``) is a float.
Number = int | float


@attrs.frozen(kw_only=True, slots=True)
class SessionStarted:
    type = "session_start"
    session_id: str
    created_at: float
    model: str
    profile: str
    metadata: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True, slots=True)
class RunStarted:
    type = "run_start"
    run: int
    prompt: str
    # The handle's id of a run started with one (``session.start``): what
    # ``session.attach`` looks for in the trace.
    run_id: str | None = None


@attrs.frozen(kw_only=True, slots=True)
class MessageAppended:
    type = "message"
    message: dict[str, Any]


@attrs.frozen(kw_only=True, slots=True)
class UsageAdded:
    type = "usage"
    delta: dict[str, Number]


@attrs.frozen(kw_only=True, slots=True)
class StatusChanged:
    type = "status"
    status: str


@attrs.frozen(kw_only=True, slots=True)
class RunFinished:
    type = "run_end"
    run: int
    status: str
    usage: dict[str, Number]
    error: str | None = None
    cancel_reason: str | None = None


@attrs.frozen(kw_only=True, slots=True)
class Compacted:
    type = "compaction"
    summary: str
    tokens_before: int
    tokens_after: int
    trigger: str
    messages: list[dict[str, Any]]


@attrs.frozen(kw_only=True, slots=True)
class ApprovalRequested:
    type = "approval_request"
    tool_call_id: str
    tool_name: str
    tool_args: dict[str, Any]


@attrs.frozen(kw_only=True, slots=True)
class ApprovalDecided:
    type = "approval_decision"
    tool_call_id: str
    approved: bool
    reason: str | None = None


@attrs.frozen(kw_only=True, slots=True)
class Snapshot:
    """A self-contained copy of a State; replay restarts from it."""

    type = "snapshot"
    session_id: str
    messages: list[dict[str, Any]]
    usage: dict[str, Number]
    status: str
    run_count: int
    compactions: int = 0
    pending: list[dict[str, Any]] = attrs.field(factory=list)


Record = (
    SessionStarted
    | RunStarted
    | MessageAppended
    | UsageAdded
    | StatusChanged
    | RunFinished
    | Compacted
    | ApprovalRequested
    | ApprovalDecided
    | Snapshot
)

RECORD_TYPES: dict[str, type[Any]] = {
    cls.type: cls
    for cls in (
        SessionStarted,
        RunStarted,
        MessageAppended,
        UsageAdded,
        StatusChanged,
        RunFinished,
        Compacted,
        ApprovalRequested,
        ApprovalDecided,
        Snapshot,
    )
}

converter = cattrs.Converter(forbid_extra_keys=False)


def _structure_number(value: Any, _type: Any) -> Number:
    # Token counts stay ints and prices (cost_usd) stay floats: a plain
    # int or float hook would turn one into the other.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return value


converter.register_structure_hook(Number, _structure_number)


@attrs.frozen(kw_only=True, slots=True)
class Envelope:
    """A record with its place in the trace."""

    seq: int
    ts: float
    record: Record


def encode(envelope: Envelope) -> bytes:
    """One trace line, newline included."""
    body = converter.unstructure(envelope.record)
    line = {"ts": envelope.ts, "seq": envelope.seq, "type": envelope.record.type, **body}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode(line: Mapping[str, Any], *, where: str) -> Envelope | None:
    """Rebuild an envelope from a parsed line; unknown record types are skipped.

    Skipping unknown types lets an older reader open a trace written by a
    newer version; a known type with the wrong fields is an error.
    """
    kind = line.get("type")
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    fields = {k: v for k, v in line.items() if k not in ("ts", "seq", "type")}
    try:
        record = converter.structure(fields, cls)
        return Envelope(seq=int(line.get("seq", 0)), ts=float(line.get("ts", 0.0)), record=record)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        raise StoreError(f"malformed {kind!r} record ({exc})", path=where) from exc


@attrs.define(kw_only=True, slots=True)
class SessionMeta:
    """``meta.json``: a cache of what a session's trace says, for listing without replay.

    Written by the session's journal, stamped by the backend with the trace's
    size at that moment (``trace_size``); a reader that finds it missing,
    unreadable or stale rebuilds it from the trace.
    """

    id: str
    status: str = "idle"
    created_at: float = 0.0
    updated_at: float = 0.0
    model: str = ""
    profile: str = ""
    first_prompt: str = ""
    run_count: int = 0
    total_tokens: int = 0
    pid: int | None = None
    turns: int = 0
    current_tool: str | None = None
    metadata: dict[str, Any] = attrs.field(factory=dict)
    trace_size: int | None = None


def encode_meta(meta: SessionMeta) -> dict[str, Any]:
    return dict(converter.unstructure(meta))


def decode_meta(data: Any) -> SessionMeta | None:
    """The meta in ``data``, or None if it is not a valid one (then rebuild it)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
        return None
    try:
        return converter.structure(dict(data), SessionMeta)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError):
        return None
