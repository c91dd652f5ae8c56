"""The conversation data of one session.

``State`` is plain data plus the records that describe every change to it.
Each mutation builds a trace record and hands it to the observers; the
session's persistence is just one such observer forwarding records to the
Store actor. Replaying the records (``State.replay``) rebuilds an equal State,
which is how resume, recovery and hibernation work.

Mutate the conversation through the methods, not by editing
``state.messages`` in place: the methods keep the trace, the token estimate
and the request-body cache right.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from . import _records as r
from ._errors import StoreError
from ._events import PendingApproval

Observer = Callable[[r.Envelope], None]

USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "api_calls",
)

_USAGE_ALIASES = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cached": "cached_tokens",
    "reasoning": "reasoning_tokens",
}

# Rough characters-per-token ratio for English and code; only used when the
# API has not told us the real count.
CHARS_PER_TOKEN = 4


def empty_usage() -> dict[str, r.Number]:
    return dict.fromkeys(USAGE_KEYS, 0)


def add_usage(into: dict[str, r.Number], delta: Mapping[str, r.Number]) -> None:
    for key, value in delta.items():
        into[key] = into.get(key, 0) + value


def _number(value: r.Number) -> r.Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"usage values must be numbers, got {value!r}")
    return value if isinstance(value, float) and not value.is_integer() else int(value)


def _encode_message(message: Mapping[str, Any]) -> bytes:
    if message.get("role") == "assistant" and message.get("content") is None:
        # `"content": null` beside tool calls is valid OpenAI but llama.cpp's
        # server answers it with HTTP 500; an empty string is accepted by
        # every server (stored histories from before are fixed on the way out).
        message = {**message, "content": ""}
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()


class State:
    """Messages, token usage, status and run count of one session."""

    __slots__ = (
        "_encoded",
        "_observers",
        "_reported_at",
        "_reported_tokens",
        "_seq",
        "compactions",
        "messages",
        "pending_approvals",
        "run_count",
        "session_id",
        "status",
        "usage",
    )

    def __init__(self, session_id: str | None = None) -> None:
        self.session_id: str = session_id or uuid.uuid4().hex
        self.messages: list[dict[str, Any]] = []
        self.usage: dict[str, r.Number] = empty_usage()
        self.status: str = "idle"
        self.run_count: int = 0
        self.compactions: int = 0
        self.pending_approvals: list[PendingApproval] = []
        self._observers: list[Observer] = []
        self._seq = 0
        # Pre-encoded JSON of messages[i], built lazily for the request body.
        self._encoded: list[bytes] = []
        # The input-token count the API reported, and len(messages) at that time.
        self._reported_tokens: int | None = None
        self._reported_at = 0

    # --- observers ------------------------------------------------------

    def add_observer(self, observer: Observer) -> None:
        """Call ``observer(envelope)`` for every record from now on."""
        self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        if observer in self._observers:
            self._observers.remove(observer)

    def _emit(self, record: r.Record) -> None:
        self._seq += 1
        if self._observers:
            envelope = r.Envelope(seq=self._seq, ts=time.time(), record=record)
            for observer in list(self._observers):
                observer(envelope)

    @property
    def seq(self) -> int:
        """Sequence number of the last record this state produced."""
        return self._seq

    # --- messages -------------------------------------------------------

    def get_messages(self) -> list[dict[str, Any]]:
        """The messages to send to the model (a shallow copy)."""
        return list(self.messages)

    def add_message(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        self._emit(r.MessageAppended(message=message))

    def add_user_message(self, content: str) -> None:
        self.add_message({"role": "user", "content": content})

    def add_system_message(self, content: str) -> None:
        self.add_message({"role": "system", "content": content})

    def add_assistant_message(
        self, content: str | None, tool_calls: list[dict[str, Any]] | None = None
    ) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_calls:
            message["tool_calls"] = tool_calls
        self.add_message(message)

    def add_tool_result(self, tool_call_id: str, result: str) -> None:
        self.add_message({"role": "tool", "tool_call_id": tool_call_id, "content": result})

    def unanswered_tool_calls(self) -> list[dict[str, Any]]:
        """Tool calls of the last assistant message that have no result yet."""
        for index in range(len(self.messages) - 1, -1, -1):
            message = self.messages[index]
            if message.get("role") == "assistant":
                calls = message.get("tool_calls") or []
                answered = {
                    m.get("tool_call_id")
                    for m in self.messages[index + 1 :]
                    if m.get("role") == "tool"
                }
                return [c for c in calls if c.get("id") not in answered]
            if message.get("role") == "user":
                return []
        return []

    def close_dangling_tool_calls(self, reason: str) -> int:
        """Answer every unanswered tool call with a synthetic result.

        Chat APIs reject a history where an assistant tool call has no
        result, so after a cancel or crash this keeps the next run valid.
        """
        dangling = self.unanswered_tool_calls()
        for call in dangling:
            self.add_tool_result(str(call.get("id")), reason)
        return len(dangling)

    def encoded_messages(self) -> list[bytes]:
        """JSON of each message, encoded once and reused for every request."""
        encoded = self._encoded
        if len(encoded) > len(self.messages):
            del encoded[:]
        for message in self.messages[len(encoded) :]:
            encoded.append(_encode_message(message))
        return encoded

    # --- usage, status, runs ---------------------------------------------

    def update_usage(self, **delta: r.Number) -> None:
        """Add token counts: ``update_usage(input=100, output=50)``.

        Accepts the short names (``input``, ``output``, ``cached``,
        ``reasoning``) and the full keys of :attr:`usage`. Counts stay
        integers; a fractional value (``cost_usd=0.01``) is kept as a float,
        never truncated.
        """
        normalised = {_USAGE_ALIASES.get(k, k): _number(v) for k, v in delta.items() if v}
        if not normalised:
            return
        if "total_tokens" not in normalised and (
            "input_tokens" in normalised or "output_tokens" in normalised
        ):
            normalised["total_tokens"] = normalised.get("input_tokens", 0) + normalised.get(
                "output_tokens", 0
            )
        add_usage(self.usage, normalised)
        self._emit(r.UsageAdded(delta=normalised))

    def report_context_tokens(self, input_tokens: int) -> None:
        """Remember the API's count of the context just sent (for compaction)."""
        self._reported_tokens = input_tokens
        self._reported_at = len(self.messages)

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self._emit(r.StatusChanged(status=status))

    def start_run(self, prompt: str, run_id: str | None = None) -> int:
        self.status = "running"
        self._emit(r.RunStarted(run=self.run_count + 1, prompt=prompt, run_id=run_id))
        return self.run_count + 1

    def finish_run(
        self,
        *,
        status: str,
        usage: Mapping[str, r.Number],
        error: str | None = None,
        cancel_reason: str | None = None,
    ) -> None:
        self.run_count += 1
        self.status = status
        self._emit(
            r.RunFinished(
                run=self.run_count,
                status=status,
                usage=dict(usage),
                error=error,
                cancel_reason=cancel_reason,
            )
        )

    # --- approvals --------------------------------------------------------

    def add_pending_approval(self, pending: PendingApproval) -> None:
        self.pending_approvals.append(pending)
        self._emit(
            r.ApprovalRequested(
                tool_call_id=pending.tool_call_id,
                tool_name=pending.tool_name,
                tool_args=dict(pending.tool_args),
            )
        )

    def resolve_approval(
        self, tool_call_id: str, approved: bool, reason: str | None = None
    ) -> None:
        self.pending_approvals = [
            p for p in self.pending_approvals if p.tool_call_id != tool_call_id
        ]
        self._emit(r.ApprovalDecided(tool_call_id=tool_call_id, approved=approved, reason=reason))

    # --- tokens and compaction ---------------------------------------------

    def estimate_tokens(self, overhead: int = 0) -> int:
        """Tokens in the context: the API's last count plus an estimate of what came after.

        ``overhead`` is what every request carries besides the messages (the
        tool schemas), added when there is no count from the API to start
        from (a new or just compacted history): the API's count includes it.
        """
        if self._reported_tokens is not None and self._reported_at <= len(self.messages):
            newer = self.messages[self._reported_at :]
            return self._reported_tokens + _estimate(newer)
        return _estimate(self.messages) + overhead

    def replace_with_summary(
        self,
        summary: str,
        tokens_before: int,
        tokens_after: int,
        *,
        keep: Iterable[dict[str, Any]] = (),
        trigger: str = "manual",
    ) -> None:
        """Swap the history for a summary, keeping system prompts and ``keep``.

        The new list is: the leading system messages, one user message
        holding the summary, then ``keep`` (the recent messages kept verbatim,
        which the caller chose without splitting tool calls from results).
        """
        head = [m for m in self.messages if m.get("role") == "system"][:1]
        new_messages = [
            *head,
            {"role": "user", "content": f"[Summary of the conversation so far]\n{summary}"},
            *keep,
        ]
        self._install(new_messages)
        self.compactions += 1
        self._reported_tokens = None
        self._emit(
            r.Compacted(
                summary=summary,
                tokens_before=tokens_before,
                tokens_after=tokens_after,
                trigger=trigger,
                messages=new_messages,
            )
        )

    def _install(self, messages: list[dict[str, Any]]) -> None:
        self.messages = list(messages)
        self._encoded = []

    # --- serialisation ---------------------------------------------------

    def snapshot(self) -> r.Snapshot:
        return r.Snapshot(
            session_id=self.session_id,
            messages=list(self.messages),
            usage=dict(self.usage),
            status=self.status,
            run_count=self.run_count,
            compactions=self.compactions,
            pending=[
                {"tool_call_id": p.tool_call_id, "tool_name": p.tool_name, "tool_args": p.tool_args}
                for p in self.pending_approvals
            ],
        )

    def apply(self, envelope: r.Envelope) -> None:
        """Replay one record (no observers are called)."""
        self._seq = max(self._seq, envelope.seq)
        rec = envelope.record
        match rec:
            case r.SessionStarted():
                self.session_id = rec.session_id
            case r.RunStarted():
                self.status = "running"
            case r.MessageAppended():
                self.messages.append(rec.message)
            case r.UsageAdded():
                add_usage(self.usage, rec.delta)
            case r.StatusChanged():
                self.status = rec.status
            case r.RunFinished():
                self.run_count = max(self.run_count + 1, rec.run)
                self.status = rec.status
            case r.Compacted():
                self._install(rec.messages)
                self.compactions += 1
            case r.ApprovalRequested():
                self.pending_approvals.append(
                    PendingApproval(
                        tool_call_id=rec.tool_call_id,
                        tool_name=rec.tool_name,
                        tool_args=rec.tool_args,
                    )
                )
            case r.ApprovalDecided():
                self.pending_approvals = [
                    p for p in self.pending_approvals if p.tool_call_id != rec.tool_call_id
                ]
            case r.Snapshot():
                self.session_id = rec.session_id
                self._install(rec.messages)
                self.usage = {**empty_usage(), **rec.usage}
                self.status = rec.status
                self.run_count = rec.run_count
                self.compactions = rec.compactions
                self.pending_approvals = [
                    PendingApproval(
                        tool_call_id=p["tool_call_id"],
                        tool_name=p["tool_name"],
                        tool_args=p.get("tool_args", {}),
                    )
                    for p in rec.pending
                ]

    @classmethod
    def replay(cls, envelopes: Iterable[r.Envelope], session_id: str | None = None) -> State:
        state = cls(session_id)
        for envelope in envelopes:
            state.apply(envelope)
        return state

    def to_jsonl(self, path: str | os.PathLike[str]) -> None:
        """Append a self-contained snapshot of this state to a trace file.

        Blocking file I/O: call it from a worker thread in async code, or let a
        :class:`SessionStore` persist the session as it runs.
        """
        envelope = r.Envelope(seq=self._seq + 1, ts=time.time(), record=self.snapshot())
        self._seq += 1
        with open(path, "ab") as fh:
            fh.write(r.encode(envelope))

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str]) -> State:
        """Rebuild a State by replaying a trace file (a torn last line is ignored)."""
        return cls.replay(read_trace(Path(path)))


def _estimate(messages: list[dict[str, Any]]) -> int:
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif content is not None:
            chars += len(json.dumps(content))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            chars += len(function.get("name", "")) + len(function.get("arguments", ""))
        chars += 16  # role and framing
    return chars // CHARS_PER_TOKEN


def parse_trace(data: bytes, *, where: str) -> list[r.Envelope]:
    """Parse trace bytes. A torn final line (a crash mid-write) is dropped.

    A record is acknowledged only once its whole line, newline included, is
    written, so whatever follows the last newline was never acknowledged and
    is ignored (the next append truncates it). A corrupt line anywhere else is
    an error naming the file and line: it means the trace was damaged, and
    silently skipping it would rebuild a State that never existed.
    """
    envelopes: list[r.Envelope] = []
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: empty, or a torn write
    for number, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise StoreError(f"corrupt trace line {number + 1}", path=where) from exc
        if not isinstance(parsed, dict):
            raise StoreError(f"corrupt trace line {number + 1}", path=where)
        envelope = r.decode(parsed, where=f"{where}:{number + 1}")
        if envelope is not None:
            envelopes.append(envelope)
    return envelopes


def read_trace(path: Path) -> list[r.Envelope]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read trace ({exc.strerror})", path=str(path)) from exc
    return parse_trace(data, where=str(path))
