"""What the scripted server answers: replies, faults, responders and dialects.

A script is a FIFO of :class:`Reply` (or bare :class:`Fault`) values. They are
plain frozen data so one script can be shared between tests and reused across
requests; everything that depends on the request (ids, the echoed model name,
estimated usage) is filled in by the server when it answers.

A :class:`Dialect` says how the server deviates from OpenAI's wire format, so
a test can reproduce what a real OpenAI-compatible server (llama.cpp's
server, a LiteLLM proxy) does differently without scripting every reply.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

import attrs
import trio

__all__ = [
    "Dialect",
    "ErrorPlacement",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "Reply",
    "Responder",
    "RetryAfterHeader",
    "ScriptItem",
    "ToolCallSpec",
    "Usage",
    "benchmark_responder",
    "offline_responder",
    "ok_responder",
]


@attrs.frozen(kw_only=True, slots=True)
class Dialect:
    """How the server departs from OpenAI's wire format; the defaults are OpenAI's.

    Clients are written against OpenAI and then pointed at local servers and
    proxies that differ in small ways which break them in the field. Each
    flag reproduces one such difference. The server reads its ``dialect``
    attribute per request, so a test may swap it between requests.
    """

    repeat_tool_name: bool = False
    """Every streamed delta of a tool call repeats its id, type and full name
    (llama.cpp does), where OpenAI sends them in the first delta only: a
    client that concatenates names gets ``"readread"``."""

    usage_chunk: bool = True
    """When false, no usage is ever reported: a stream has no usage chunk even
    if ``stream_options.include_usage`` asked for one, and a completion has no
    ``"usage"`` key."""

    reject_null_content: bool = False
    """When true, an assistant message with ``"content": null`` in the request
    is answered with a llama.cpp-style HTTP 500, as servers whose chat template
    needs a string do. Such a request consumes no scripted reply."""

    json_schema: bool = True
    """When false, a request asking for ``response_format`` of type
    ``json_schema`` is refused with an HTTP 400 naming it, as endpoints
    without structured outputs answer. Such a request consumes no reply."""

    @classmethod
    def llama_cpp(cls) -> Dialect:
        """llama.cpp's server: names repeated, no usage, and no null assistant content."""
        return cls(repeat_tool_name=True, usage_chunk=False, reject_null_content=True)


@attrs.frozen(kw_only=True, slots=True)
class Usage:
    """Token counts reported for one reply.

    Scripting them lets tests pin down cost and context accounting exactly;
    when a reply carries none, the server estimates them from sizes instead.
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


def _encode_arguments(value: str | Mapping[str, Any]) -> str:
    # A string is sent verbatim so tests can feed the client malformed JSON.
    return value if isinstance(value, str) else json.dumps(value)


@attrs.frozen(kw_only=True, slots=True)
class ToolCallSpec:
    """One function call the model "decides" to make.

    ``arguments`` given as a string is sent byte for byte, which is how tests
    exercise the client's handling of malformed tool arguments. ``id`` defaults
    to a per-request id chosen by the server.
    """

    name: str
    arguments: str | Mapping[str, Any] = attrs.field(factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        return _encode_arguments(self.arguments)


class FaultKind(enum.Enum):
    """The failure modes the server can inject."""

    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    RESET_MID_STREAM = "reset_mid_stream"
    MALFORMED_CHUNK = "malformed_chunk"
    STALL = "stall"


RetryAfterHeader = Literal["openai", "seconds", "http-date", "ms", "litellm", "none"]
"""How a rate limit says when to retry.

``openai``: ``retry-after`` (seconds) and ``retry-after-ms``; ``seconds``:
``retry-after`` only; ``http-date``: ``retry-after`` as an HTTP date;
``ms``: ``retry-after-ms`` only; ``litellm``: ``llm_provider-retry-after``
(seconds) only, as LiteLLM forwards a provider's header; ``none``: no hint.
"""

ErrorPlacement = Literal["status", "stream-error", "empty-stream"]
"""Where a context-length error reaches the client.

``status``: an HTTP 400 (OpenAI). ``stream-error``: an HTTP 200 whose stream
(or JSON body) carries an ``{"error": ...}`` object (LiteLLM).
``empty-stream``: no error at all, an empty answer with
``finish_reason="length"`` (servers whose prompt filled the whole context).
"""


def _one_of(argument: str, value: str, allowed: Any) -> None:
    choices = get_args(allowed)
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{argument} must be one of {listed}; got {value!r}")


_STATUS_ERRORS = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}


@attrs.frozen(kw_only=True, slots=True)
class Fault:
    """A failure injected instead of, or in the middle of, a reply.

    HTTP-level faults (``rate_limited``, ``server_error``,
    ``context_length_exceeded``) replace the response. Stream-level faults
    (``reset_mid_stream``, ``malformed_chunk``, ``stall``) first send
    ``after_chunks`` SSE events of the reply they are attached to, so a client
    sees a stream that started well and then broke. For a non-streaming
    request they act at the same point without the partial chunks: the
    connection is reset, the body is not JSON, or nothing is ever sent.

    A context-length fault whose ``where`` is not ``"status"`` is no HTTP
    error: it answers 200 and reports the problem in the body (see
    :data:`ErrorPlacement`); ``after_chunks`` applies to ``"stream-error"``.
    """

    kind: FaultKind
    status: int = 500
    message: str = ""
    code: str | None = None
    retry_after: float | None = None
    retry_after_header: RetryAfterHeader = "openai"
    where: ErrorPlacement = "status"
    after_chunks: int = 0

    @classmethod
    def rate_limited(
        cls,
        retry_after: float = 1.0,
        *,
        message: str | None = None,
        header: RetryAfterHeader = "openai",
    ) -> Fault:
        """A 429; ``header`` picks how the delay is advertised (:data:`RetryAfterHeader`).

        An ``http-date`` is computed when the response is sent, from the wall
        clock (``time.time()``, not trio's), rounded up to whole seconds.
        """
        _one_of("header", header, RetryAfterHeader)
        return cls(
            kind=FaultKind.RATE_LIMITED,
            status=429,
            message=message or "Rate limit reached for requests. Please try again later.",
            code="rate_limit_exceeded",
            retry_after=retry_after,
            retry_after_header=header,
        )

    @classmethod
    def server_error(cls, status: int = 500, *, message: str | None = None) -> Fault:
        if not 500 <= status <= 599:
            raise ValueError(f"server_error status must be 5xx, got {status}")
        return cls(
            kind=FaultKind.SERVER_ERROR,
            status=status,
            message=message or _STATUS_ERRORS.get(status, "Server error."),
        )

    @classmethod
    def context_length_exceeded(
        cls, *, max_tokens: int = 128000, where: ErrorPlacement = "status"
    ) -> Fault:
        """The prompt does not fit; ``where`` picks how that shows (:data:`ErrorPlacement`)."""
        _one_of("where", where, ErrorPlacement)
        return cls(
            kind=FaultKind.CONTEXT_LENGTH_EXCEEDED,
            status=400,
            message=(
                f"This model's maximum context length is {max_tokens} tokens. "
                "However, your messages resulted in more tokens. "
                "Please reduce the length of the messages."
            ),
            code="context_length_exceeded",
            where=where,
        )

    @classmethod
    def reset_mid_stream(cls, after_chunks: int = 1) -> Fault:
        return cls(kind=FaultKind.RESET_MID_STREAM, after_chunks=_non_negative(after_chunks))

    @classmethod
    def malformed_chunk(cls, after_chunks: int = 1) -> Fault:
        return cls(kind=FaultKind.MALFORMED_CHUNK, after_chunks=_non_negative(after_chunks))

    @classmethod
    def stall(cls, after_chunks: int = 1) -> Fault:
        return cls(kind=FaultKind.STALL, after_chunks=_non_negative(after_chunks))

    @property
    def is_http_error(self) -> bool:
        """Whether the fault replaces the whole response with an HTTP error status."""
        return self.where == "status" and self.kind in (
            FaultKind.RATE_LIMITED,
            FaultKind.SERVER_ERROR,
            FaultKind.CONTEXT_LENGTH_EXCEEDED,
        )


def _non_negative(n: int) -> int:
    if n < 0:
        raise ValueError(f"after_chunks must be >= 0, got {n}")
    return n


def _optional_non_negative(_instance: object, attribute: Any, value: float | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _optional_positive(_instance: object, attribute: Any, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


def _to_tuple(calls: Iterable[ToolCallSpec]) -> tuple[ToolCallSpec, ...]:
    return tuple(calls)


# Enough text that a stream-level fault attached to a bare Fault has chunks to
# send before it strikes, whatever chunk size is in force.
_FAULT_FILLER = "This reply is going to break part way through, as scripted. " * 4


@attrs.frozen(kw_only=True, slots=True)
class Reply:
    """One scripted model answer.

    The fields are named ``content`` and ``calls`` so that the constructor
    helpers can be called ``Reply.text`` and ``Reply.tool_calls``. Timing
    fields left as ``None`` fall back to the server's settings, so a single
    slow reply can sit in an otherwise fast script.
    """

    content: str = ""
    calls: tuple[ToolCallSpec, ...] = attrs.field(default=(), converter=_to_tuple)
    usage: Usage | None = None
    fault: Fault | None = None
    finish_reason: str | None = None
    first_byte_delay: float | None = attrs.field(default=None, validator=_optional_non_negative)
    chunk_delay: float | None = attrs.field(default=None, validator=_optional_non_negative)
    chunk_size: int | None = attrs.field(default=None, validator=_optional_positive)
    # A streamed reply that "thinks": after the response headers, this many
    # seconds pass before the first chunk, as with a reasoning model. With
    # ``keepalive``, an SSE comment line is sent every that many seconds
    # meanwhile, as OpenRouter and other proxies do.
    think_time: float = attrs.field(default=0.0, validator=_optional_non_negative)
    keepalive: float | None = attrs.field(default=None, validator=_optional_non_negative)

    @classmethod
    def text(
        cls,
        content: str,
        *,
        usage: Usage | None = None,
        fault: Fault | None = None,
        finish_reason: str | None = None,
        first_byte_delay: float | None = None,
        chunk_delay: float | None = None,
        chunk_size: int | None = None,
        think_time: float = 0.0,
        keepalive: float | None = None,
    ) -> Reply:
        return cls(
            content=content,
            usage=usage,
            fault=fault,
            finish_reason=finish_reason,
            first_byte_delay=first_byte_delay,
            chunk_delay=chunk_delay,
            chunk_size=chunk_size,
            think_time=think_time,
            keepalive=keepalive,
        )

    @classmethod
    def tool_call(
        cls,
        name: str,
        arguments: str | Mapping[str, Any] | None = None,
        *,
        text: str = "",
        id: str | None = None,
        usage: Usage | None = None,
        fault: Fault | None = None,
        first_byte_delay: float | None = None,
        chunk_delay: float | None = None,
        chunk_size: int | None = None,
    ) -> Reply:
        spec = ToolCallSpec(name=name, arguments={} if arguments is None else arguments, id=id)
        return cls.tool_calls(
            [spec],
            text=text,
            usage=usage,
            fault=fault,
            first_byte_delay=first_byte_delay,
            chunk_delay=chunk_delay,
            chunk_size=chunk_size,
        )

    @classmethod
    def tool_calls(
        cls,
        calls: Iterable[ToolCallSpec],
        *,
        text: str = "",
        usage: Usage | None = None,
        fault: Fault | None = None,
        first_byte_delay: float | None = None,
        chunk_delay: float | None = None,
        chunk_size: int | None = None,
    ) -> Reply:
        specs = tuple(calls)
        if not specs:
            raise ValueError("Reply.tool_calls needs at least one ToolCallSpec")
        return cls(
            content=text,
            calls=specs,
            usage=usage,
            fault=fault,
            first_byte_delay=first_byte_delay,
            chunk_delay=chunk_delay,
            chunk_size=chunk_size,
        )

    @classmethod
    def from_fault(cls, fault: Fault) -> Reply:
        """Wrap a bare fault; stream-level faults get filler text to break."""
        return cls(content="" if fault.is_http_error else _FAULT_FILLER, fault=fault)

    @property
    def effective_finish_reason(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.calls else "stop"


ScriptItem = Reply | Fault


@attrs.define(kw_only=True, slots=True, eq=False)
class RecordedRequest:
    """One HTTP request as the server saw it, and what became of it.

    It is mutable on purpose: ``disconnected`` and ``completed`` change while
    the response is being sent, and tests read them afterwards. ``json`` is
    ``None`` when the body was empty or not JSON. ``finished`` is set once the
    server is done with the request, whether it completed, the client went
    away (``disconnected``), or the server broke it on purpose.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    reply: Reply | None = None
    completed: bool = False
    disconnected: bool = False
    disconnected_event: trio.Event = attrs.field(factory=trio.Event, repr=False)
    finished: trio.Event = attrs.field(factory=trio.Event, repr=False)

    @property
    def messages(self) -> list[dict[str, Any]]:
        if isinstance(self.json, dict):
            messages = self.json.get("messages")
            if isinstance(messages, list):
                return [m for m in messages if isinstance(m, dict)]
        return []

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True

    @property
    def model(self) -> str | None:
        model = self.json.get("model") if isinstance(self.json, dict) else None
        return model if isinstance(model, str) else None

    @property
    def tools(self) -> list[dict[str, Any]]:
        if isinstance(self.json, dict):
            tools = self.json.get("tools")
            if isinstance(tools, list):
                return [t for t in tools if isinstance(t, dict)]
        return []


Responder = Callable[[RecordedRequest], ScriptItem]


def ok_responder(request: RecordedRequest) -> Reply:
    """Answer "ok": lets a test that only cares about the client side skip scripting."""
    return _OK


_OK = Reply.text("ok")


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""


def benchmark_responder(
    *,
    tool_name: str = "echo",
    tool_arg: str = "text",
    text_only: bool = False,
    reply_text: str = "The tool ran and returned its output.",
    max_argument_chars: int = 200,
) -> Responder:
    """Drive an agent loop through exactly one tool round trip per user turn.

    A user message as the last message gets a tool call (echoing the user's
    text, truncated so argument size stays bounded), anything else (a tool
    result) gets the final text. Benchmarks then measure a full
    model -> tool -> model turn without scripting every request.
    """
    text_reply = Reply.text(reply_text)

    def respond(request: RecordedRequest) -> Reply:
        messages = request.messages
        if text_only or not messages or messages[-1].get("role") != "user":
            return text_reply
        text = _message_text(messages[-1])[:max_argument_chars]
        return Reply.tool_call(tool_name, {tool_arg: text})

    return respond


def offline_responder(request: RecordedRequest) -> Reply:
    """The embedded offline model's default script: it uses the real tools.

    Asked something, it lists the working directory; shown the listing, it
    reads the first file there (if the agent may); shown a file, it answers
    with what it found. It never claims to understand the question: it is
    a stand-in that exercises the machinery end to end without an API key.
    """
    messages = request.messages
    last = messages[-1] if messages else {}
    offered = {t.get("function", {}).get("name") for t in request.tools}
    calls = [m for m in messages if m.get("role") == "assistant" and m.get("tool_calls")]
    if last.get("role") != "tool":
        if "list" in offered:
            return Reply.tool_call("list", {"path": "."}, text="Let me look around. ")
        return Reply.text(_OFFLINE_NOTE + " No tools are available to me here.")
    result = str(last.get("content") or "")
    if len(calls) == 1 and "read" in offered:
        for line in result.splitlines()[1:]:
            name = line.strip()
            if name and not name.endswith("/") and "->" not in name:
                return Reply.tool_call("read", {"path": name.split("  (")[0], "limit": 20})
    lines = [line for line in result.splitlines() if line.strip()]
    summary = lines[0] if lines else "(nothing)"
    return Reply.text(
        f"{_OFFLINE_NOTE} I looked at the working directory "
        f"({len(calls)} tool call{'s' if len(calls) != 1 else ''}); the last result begins: "
        f"{summary[:200]}"
    )


_OFFLINE_NOTE = "[offline model: set OPENAI_API_KEY or --base-url for a real one]"
