"""The model client: OpenAI Chat Completions over ``openai.AsyncOpenAI``.

Three measured costs shape this module:

* The HTTP connection pool does work proportional to its size on every
  request, so one pool shared by thousands of concurrent runs makes each call
  slower as concurrency grows. :class:`ModelClients` therefore splits a
  provider's connections over *shards* (separate pools of at most
  ``SHARD_SIZE`` connections), opened only as load needs them.
* openai-python's request transform walks the whole message list on every
  call, O(history). We send the request body as bytes we build ourselves,
  from messages JSON-encoded once (``State.encoded_messages``), so a call
  with a long history costs a join, not a re-serialisation.
* Building an ``AsyncOpenAI`` client costs ~20 ms (TLS context), so clients
  are shared per provider and never made per run.

Retries (429, 5xx, connection errors) happen only before the first streamed
byte: after that, text has already reached the user's event handlers.
A 429 pauses every run using the same provider key (:class:`RateGate`).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import os
import random
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import attrs
import httpx2
import openai
import trio
from openai.types.chat import ChatCompletion

from . import _config
from ._errors import ContextLengthExceeded, ModelError
from ._transport import TrioTransport, transport_choice

# Connections per pool shard: small enough that per-request pool bookkeeping
# stays cheap, large enough that a modest workload uses a single pool.
SHARD_SIZE = 128
DEFAULT_MAX_RETRIES = 4
# Backoff for retries without a Retry-After header: base * 2**attempt, jittered.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
# A Retry-After longer than this is not worth waiting for inside a run.
MAX_RETRY_AFTER = 120.0
# How long a request may wait for the response headers. Streamed responses
# start as soon as a provider accepts the request, so a silent minute means
# the server is stuck (or a local server is still reading a huge prompt:
# raise it for that). A non-streamed request, whose headers come only with
# the whole answer, waits up to the idle limit instead.
DEFAULT_RESPONSE_TIMEOUT = _config.DEFAULT_RESPONSE_TIMEOUT
# How long a started stream may go without a single byte. Reasoning models
# can think for minutes before their first token; OpenAI sends its first
# chunk (the role) at once and then may say nothing, while OpenRouter and
# Anthropic's compatible endpoint send SSE comments or ping events meanwhile.
# Every byte counts as life (comments included), so this only ends a stream
# that is truly dead, and five minutes lets the slowest thinking through.
DEFAULT_STREAM_IDLE_TIMEOUT = _config.DEFAULT_STREAM_IDLE_TIMEOUT
CONNECT_TIMEOUT = 10.0
# The clients' own default, for requests made outside a session (every
# session request sets its own limits).
_HTTP_TIMEOUT = httpx2.Timeout(DEFAULT_STREAM_IDLE_TIMEOUT, connect=CONNECT_TIMEOUT)

_ssl_context: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building one is most of a client's cost."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx2.create_ssl_context()
    return _ssl_context


@attrs.frozen(kw_only=True, slots=True)
class ToolCall:
    """A tool call assembled from streamed deltas; ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str

    def to_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@attrs.frozen(kw_only=True, slots=True)
class ModelTurn:
    """One model call's answer.

    ``usage_known`` is False when the server sent no usage (some local
    servers never do): ``usage`` is then empty, not a zero that looks real.
    """

    text: str
    tool_calls: list[ToolCall]
    usage: dict[str, int]
    finish_reason: str | None
    usage_known: bool = True


def usage_from(raw: Any) -> dict[str, int]:
    """Our usage keys from an OpenAI ``usage`` object (or dict)."""
    if raw is None:
        return {}

    def get(obj: Any, name: str) -> Any:
        if obj is None:
            return None
        if isinstance(obj, Mapping):
            return obj.get(name)
        return getattr(obj, name, None)

    prompt = get(raw, "prompt_tokens") or 0
    completion = get(raw, "completion_tokens") or 0
    cached = get(get(raw, "prompt_tokens_details"), "cached_tokens") or 0
    reasoning = get(get(raw, "completion_tokens_details"), "reasoning_tokens") or 0
    return {
        "input_tokens": int(prompt),
        "output_tokens": int(completion),
        "cached_tokens": int(cached),
        "reasoning_tokens": int(reasoning),
        "total_tokens": int(get(raw, "total_tokens") or prompt + completion),
        "api_calls": 1,
    }


class RateGate:
    """A pause shared by every run on one provider key.

    A 429 with ``Retry-After`` means the *key* is over its budget, not the
    one request; letting the other runs keep hammering would only earn more
    429s. Runs call :meth:`wait` before each request.
    """

    def __init__(self) -> None:
        self._resume_at = 0.0

    def pause(self, seconds: float) -> None:
        self._resume_at = max(self._resume_at, trio.current_time() + seconds)

    async def wait(self) -> None:
        # Loop: another run may extend the pause while we sleep.
        while (delay := self._resume_at - trio.current_time()) > 0:  # noqa: ASYNC110
            await trio.sleep(delay)


_GATES: trio.lowlevel.RunVar[dict[str, RateGate]] = trio.lowlevel.RunVar("rho_actors_rate_gates")


def shared_gate(key: str) -> RateGate:
    """The rate gate of a provider key, shared by everything in this trio run.

    Plain data in a run-local variable: two supervisors (or two standalone
    sessions) on the same key see each other's 429s without sharing pools.
    """
    try:
        gates = _GATES.get()
    except LookupError:
        gates = {}
        _GATES.set(gates)
    gate = gates.get(key)
    if gate is None:
        gate = gates[key] = RateGate()
    return gate


@attrs.define(slots=True)
class _Shard:
    client: openai.AsyncOpenAI
    # The streaming path posts through openai's httpx2 client directly (see
    # ModelClient._post_stream), to the URL and with the headers openai would
    # use, computed once.
    http: httpx2.AsyncClient
    url: str
    headers: dict[str, str]
    active: int = 0


_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)

# Endpoints answered in this process, without sockets, by base URL: where
# ``rho_actors.testing.open_in_process_model`` registers its transport.
IN_PROCESS_TRANSPORTS: dict[str, httpx2.AsyncBaseTransport] = {}


class _Provider:
    """The pools and the rate gate of one (base_url, api_key)."""

    def __init__(self, base_url: str | None, api_key: str) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.gate = shared_gate(_provider_key(base_url, api_key))
        self.shards: list[_Shard] = []
        # Models this endpoint refused a json_schema response_format for:
        # their structured output goes through a final-answer tool instead.
        self.no_json_schema: set[str] = set()

    def _new_shard(self) -> _Shard:
        transport = self._transport()
        # The stock transport, and httpx2's transports for proxies from the
        # environment, take the context up front; ours loads it on its first
        # https connection (a local http endpoint never pays for the CAs).
        needs_context = transport is None or any(os.environ.get(v) for v in _PROXY_VARIABLES)
        http = httpx2.AsyncClient(
            verify=_shared_ssl_context() if needs_context else True,
            timeout=_HTTP_TIMEOUT,
            limits=httpx2.Limits(max_connections=SHARD_SIZE, max_keepalive_connections=SHARD_SIZE),
            follow_redirects=True,
            transport=transport,
        )
        client = openai.AsyncOpenAI(
            api_key=self.api_key,
            base_url=self.base_url,
            max_retries=0,  # we retry ourselves, with a shared rate gate
            timeout=_HTTP_TIMEOUT,
            http_client=http,
        )
        headers = {
            name: value
            for name, value in {**client.default_headers, **client.auth_headers}.items()
            if isinstance(value, str)
        }
        headers["Accept"] = "text/event-stream"
        url = str(client.base_url) + "chat/completions"
        shard = _Shard(client=client, http=http, url=url, headers=headers)
        self.shards.append(shard)
        return shard

    def _transport(self) -> httpx2.AsyncBaseTransport | None:
        """An in-process endpoint's transport; else the trio-native one (see
        ``rho_actors._transport``) unless the stock one was chosen."""
        in_process = IN_PROCESS_TRANSPORTS.get(self.base_url or "")
        if in_process is not None:
            return in_process
        if transport_choice() == "trio":
            return TrioTransport(ssl_context=_shared_ssl_context, max_idle=SHARD_SIZE)
        return None

    def acquire(self) -> _Shard:
        for shard in self.shards:
            if shard.active < SHARD_SIZE:
                shard.active += 1
                return shard
        shard = self._new_shard()
        shard.active += 1
        return shard

    async def aclose(self) -> None:
        for shard in self.shards:
            await shard.client.close()
        self.shards.clear()


def _provider_key(base_url: str | None, api_key: str) -> str:
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
    return f"{base_url or 'default'}#{digest}"


class ModelClients:
    """Shared model clients, one set of pools and one rate gate per provider key.

    Its lifetime is an ``async with`` block (:func:`open_model_clients`): a
    supervisor holds one for all its sessions; a standalone session run
    holds one for the duration of the run.
    """

    def __init__(self) -> None:
        self._providers: dict[str, _Provider] = {}
        self.closed = False

    def provider(self, base_url: str | None, api_key: str) -> _Provider:
        key = _provider_key(base_url, api_key)
        found = self._providers.get(key)
        if found is None:
            found = self._providers[key] = _Provider(base_url, api_key)
        return found

    async def aclose(self) -> None:
        self.closed = True
        with trio.CancelScope(shield=True):
            for provider in self._providers.values():
                await provider.aclose()
        self._providers.clear()


@asynccontextmanager
async def open_model_clients() -> AsyncIterator[ModelClients]:
    clients = ModelClients()
    try:
        yield clients
    finally:
        await clients.aclose()


@attrs.frozen(kw_only=True, slots=True)
class ModelSettings:
    """What a session sends with every request, besides the messages."""

    model: str
    base_url: str | None
    api_key: str = attrs.field(repr=False)
    # Request fields (temperature, max_tokens, tool_choice, extra_body...),
    # merged into the body after the standard ones, and extra HTTP headers.
    options: Mapping[str, Any] = attrs.field(factory=dict)
    extra_headers: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    reasoning_effort: str | None = None
    service_tier: str | None = None
    response_format: Mapping[str, Any] | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    response_timeout: float = DEFAULT_RESPONSE_TIMEOUT
    stream_idle_timeout: float = DEFAULT_STREAM_IDLE_TIMEOUT

    def header_wait(self, *, stream: bool) -> float:
        """Seconds to wait for the response headers of one attempt."""
        if stream:
            return self.response_timeout
        return max(self.response_timeout, self.stream_idle_timeout)

    def http_timeout(self) -> httpx2.Timeout:
        """Per-request limits: any single read may wait at most the idle limit."""
        return httpx2.Timeout(self.stream_idle_timeout, connect=CONNECT_TIMEOUT)


def build_body(
    settings: ModelSettings,
    encoded_messages: Sequence[bytes],
    tools: Sequence[Mapping[str, Any]] | None,
    *,
    stream: bool,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The request body: the settings as JSON, with the pre-encoded messages spliced in."""
    head: dict[str, Any] = {"model": settings.model, "stream": stream}
    if stream:
        head["stream_options"] = {"include_usage": True}
    if settings.reasoning_effort is not None:
        head["reasoning_effort"] = settings.reasoning_effort
    if settings.service_tier is not None:
        head["service_tier"] = settings.service_tier
    if settings.response_format is not None:
        head["response_format"] = dict(settings.response_format)
    if settings.options:
        head.update(settings.options)
    if extra:
        head.update(extra)
    prefix = json.dumps(head, separators=(",", ":")).encode()
    # One join over every piece: joining the messages first and then the
    # whole body would copy a long history twice per call.
    parts = [prefix[:-1]]
    if tools:
        parts += (b',"tools":', encoded_tools(tools))
    parts.append(b',"messages":[')
    for i, message in enumerate(encoded_messages):
        if i:
            parts.append(b",")
        parts.append(message)
    parts.append(b"]}")
    return b"".join(parts)


_encoded_tools: dict[int, tuple[Sequence[Mapping[str, Any]], bytes]] = {}


def encoded_tools(tools: Sequence[Mapping[str, Any]]) -> bytes:
    """The tools' JSON, encoded once per list.

    Sessions of one agent share its registry's cached spec list, so every
    request of every session reuses one encoding (several kilobytes for the
    built-in tools) instead of re-encoding it per call. Keyed by identity,
    checked against the object itself.
    """
    found = _encoded_tools.get(id(tools))
    if found is not None and found[0] is tools:
        return found[1]
    encoded = json.dumps(list(tools), separators=(",", ":")).encode()
    if len(_encoded_tools) >= 1024:
        _encoded_tools.clear()
    _encoded_tools[id(tools)] = (tools, encoded)
    return encoded


def retry_delay(exc: Exception, attempt: int) -> float:
    """How long to wait before retry number ``attempt`` (0-based)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        delay = _parse_retry_after(headers)
        if delay is not None:
            return min(delay, MAX_RETRY_AFTER)
    backoff: float = min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt)
    return backoff * (0.5 + random.random() / 2)


def _parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait, from the hints servers and proxies really send.

    OpenAI sends ``retry-after-ms`` and ``retry-after`` (seconds); other
    servers send ``Retry-After`` as an HTTP date; LiteLLM forwards the
    provider's header as ``llm_provider-retry-after``.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after") or headers.get("llm_provider-retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_EMPTY_LENGTH = (
    "the model endpoint ended the reply at the length limit before it began: "
    "the prompt fills the context window"
)


def _in_body_error(error: Any, where: str) -> ModelError:
    """The error a server reports inside a 200 body (a stream event, or LiteLLM's
    JSON): a context-length one is :class:`ContextLengthExceeded`, so the run
    compacts and retries exactly as after a 400."""
    message = error.get("message") if isinstance(error, dict) else error
    code = error.get("code") if isinstance(error, dict) else None
    if code == "context_length_exceeded" or _mentions_context_length(str(message)):
        return ContextLengthExceeded(
            f"the model endpoint reported {where}: {message}", status_code=200
        )
    return ModelError(f"the model endpoint reported an error {where}: {message}")


def _mentions_context_length(text: str) -> bool:
    text = text.lower()
    return (
        "context length" in text
        or "context_length" in text
        or "too many tokens" in text
        or "context window" in text
        or "exceeds the available context size" in text  # llama.cpp
    )


class NoResponse(Exception):
    """One attempt got no response headers in time (retryable)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(f"no response from the model endpoint in {seconds:g} s")


class SilentStream(Exception):
    """A stream went idle before delivering anything: safe to retry."""


def _is_retryable(exc: Exception) -> bool:
    if isinstance(exc, NoResponse | SilentStream):
        return True
    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code == 408 or exc.status_code >= 500
    return False


def _is_context_overflow(exc: Exception) -> bool:
    if not isinstance(exc, openai.BadRequestError):
        return False
    code = getattr(exc, "code", None)
    if code == "context_length_exceeded":
        return True
    return _mentions_context_length(str(exc))


def _describe(exc: Exception, settings: ModelSettings | None = None) -> str:
    if isinstance(exc, NoResponse | SilentStream):
        return str(exc)
    if isinstance(exc, openai.APITimeoutError) and settings is not None:
        return f"no response from the model endpoint in {settings.stream_idle_timeout:g} s"
    if isinstance(exc, openai.APIStatusError):
        # openai's message repeats the status ("Error code: 401 - ..."): once is enough.
        message = re.sub(r"^Error code: \d+ - ", "", exc.message)
        return f"model endpoint returned HTTP {exc.status_code}: {message}"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        return f"cannot reach the model endpoint{detail}"
    return f"{type(exc).__name__}: {exc}"


class _SSEParser:
    """Splits a server-sent-events byte stream into ``data`` payloads."""

    __slots__ = ("_buffer", "_data")

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        out: list[bytes] = []
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if self._data:
                    out.append(b"\n".join(self._data))
                    self._data = []
            elif line.startswith(b"data:"):
                self._data.append(line[5:].lstrip(b" "))
            # "event:", "id:", "retry:" and ":" comments carry nothing we use.
        return out


class _TurnAssembler:
    """Builds a :class:`ModelTurn` from chat-completion chunks.

    Tool-call fragments are assembled by their ``index``: the id and name
    arrive first, the arguments in pieces after.
    """

    __slots__ = ("calls", "done", "finish_reason", "text", "usage")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, int] = {}
        self.finish_reason: str | None = None
        self.done = False

    def add(self, payload: bytes) -> str | None:
        """Take one event; returns the text delta it carried, if any."""
        if payload == b"[DONE]":
            self.done = True
            return None
        try:
            chunk = json.loads(payload)
        except ValueError as exc:
            raise ModelError(f"malformed chunk in the model's stream: {payload[:120]!r}") from exc
        if not isinstance(chunk, dict):
            raise ModelError(f"unexpected chunk in the model's stream: {payload[:120]!r}")
        if "error" in chunk:
            raise _in_body_error(chunk["error"], "mid-stream")
        if chunk.get("usage"):
            self.usage = usage_from(chunk["usage"])
        text_out: str | None = None
        for choice in chunk.get("choices") or ():
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.text.append(content)
                text_out = content if text_out is None else text_out + content
            for fragment in delta.get("tool_calls") or ():
                index = fragment.get("index", 0)
                slot = self.calls.setdefault(index, {"id": None, "name": "", "args": []})
                if fragment.get("id"):
                    slot["id"] = fragment["id"]
                function = fragment.get("function") or {}
                name = function.get("name")
                if name:
                    # OpenAI sends the name once; llama.cpp repeats the whole
                    # name in every fragment. A fragment that starts with what
                    # we have is the whole name again, not a continuation.
                    current = slot["name"]
                    slot["name"] = name if name.startswith(current) else current + name
                if function.get("arguments"):
                    slot["args"].append(function["arguments"])
        return text_out

    @property
    def empty(self) -> bool:
        """Nothing the caller could have seen yet: no text, no tool call."""
        return not self.text and not self.calls

    def finish(self) -> ModelTurn:
        if not self.done and self.finish_reason is None:
            raise ModelError("the model's stream ended before the reply was complete")
        if self.finish_reason == "length" and self.empty and not self.usage.get("output_tokens"):
            # Cut off before a single token: the prompt alone fills the context
            # window (some servers say so this way instead of with a 400).
            raise ContextLengthExceeded(_EMPTY_LENGTH, status_code=200)
        tool_calls = [
            ToolCall(
                id=slot["id"] or f"call_{index}_{random.getrandbits(32):08x}",
                name=slot["name"],
                arguments="".join(slot["args"]),
            )
            for index, slot in sorted(self.calls.items())
        ]
        return ModelTurn(
            text="".join(self.text),
            tool_calls=tool_calls,
            usage=self.usage,
            finish_reason=self.finish_reason,
            usage_known=bool(self.usage),
        )


def _connection_dropper(
    response: httpx2.Response, dropped: list[bool]
) -> Callable[[], None] | None:
    """A function that closes the response's socket now, from any task.

    Uses httpcore's ``network_stream`` response extension; None if the
    transport does not expose a socket.
    """
    stream = response.extensions.get("network_stream")
    get_extra_info = getattr(stream, "get_extra_info", None)
    sock = get_extra_info("socket") if get_extra_info is not None else None
    close = getattr(sock, "close", None)
    if close is None:
        return None

    def drop() -> None:
        dropped.append(True)
        with contextlib.suppress(OSError):
            close()

    return drop


class ModelClient:
    """Calls one model with one session's settings, through shared pools."""

    def __init__(
        self, clients: ModelClients, settings: ModelSettings, *, owns_clients: bool = False
    ) -> None:
        self._clients = clients
        self._owns_clients = owns_clients
        self.settings = settings
        self._provider = clients.provider(settings.base_url, settings.api_key)
        # Per-request options, built once: the settings never change.
        self._options: Any = {"timeout": settings.http_timeout()}
        if settings.extra_headers:
            self._options["headers"] = dict(settings.extra_headers)

    def with_settings(self, **changes: Any) -> ModelClient:
        """The same pools with other settings (for the rest of a run)."""
        return ModelClient(self._clients, attrs.evolve(self.settings, **changes))

    @property
    def json_schema_refused(self) -> bool:
        """This endpoint refused a json_schema ``response_format`` for this model before."""
        return self.settings.model in self._provider.no_json_schema

    def refuse_json_schema(self) -> None:
        self._provider.no_json_schema.add(self.settings.model)

    async def aclose(self) -> None:
        """Close the pools, if this client owns them (see ``Agent.create_client``)."""
        if self._owns_clients:
            await self._clients.aclose()

    async def __aenter__(self) -> ModelClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def gate(self) -> RateGate:
        return self._provider.gate

    async def _open_with_retries(
        self,
        body: bytes,
        *,
        stream: bool,
        on_retry: Callable[[Exception, float, int], Any] | None = None,
        attempt: int = 0,
        seen: set[str] | None = None,
    ) -> tuple[Any, _Shard, int]:
        """Send the request until a response starts; returns it, its shard and the attempt.

        Each attempt waits for the headers inside a cancel scope (see
        ``ModelSettings.header_wait``): a server that accepts the request and
        never answers costs one bounded attempt, not the whole run.
        """
        options = self._options
        wait = self.settings.header_wait(stream=stream)
        while True:
            await self.gate.wait()
            shard = self._provider.acquire()
            failure: Exception
            try:
                with trio.move_on_after(wait):
                    if stream:
                        response = await self._post_stream(shard, body)
                    else:
                        response = await shard.client.post(
                            "/chat/completions",
                            cast_to=cast(Any, ChatCompletion),
                            content=body,
                            options=options,
                        )
                    return response, shard, attempt
                failure = NoResponse(wait)
            except openai.APIError as exc:
                failure = exc
            except BaseException:
                shard.active -= 1
                raise
            shard.active -= 1
            attempt = await self._before_retry(failure, attempt, on_retry, seen)

    async def _post_stream(self, shard: _Shard, body: bytes) -> httpx2.Response:
        """POST a streaming request and return the response once its headers are in.

        openai's request pipeline (building options, copying headers,
        re-validating the URL) costs about half a millisecond per call, a
        large share of a run's CPU; the body is already built, so the request
        goes straight to the same httpx2 client with the headers openai would
        send. Failures become openai's own error types, as from its client.
        """
        http = shard.http
        headers = shard.headers
        if self.settings.extra_headers:
            headers = {**headers, **self.settings.extra_headers}
        request = http.build_request(
            "POST", shard.url, content=body, headers=headers, timeout=self._options["timeout"]
        )
        try:
            response = await http.send(request, stream=True)
        except httpx2.TimeoutException as exc:
            raise openai.APITimeoutError(request=request) from exc
        except httpx2.TransportError as exc:
            raise openai.APIConnectionError(message=_describe(exc), request=request) from exc
        if response.status_code >= 400:
            try:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await response.aread()
            finally:
                await response.aclose()
            raise shard.client._make_status_error_from_response(response)
        return response

    async def _before_retry(
        self,
        failure: Exception,
        attempt: int,
        on_retry: Callable[[Exception, float, int], Any] | None,
        seen: set[str] | None = None,
    ) -> int:
        """Wait out the backoff for a retryable failure, or raise it as a ModelError.

        ``seen`` collects the 500s of one request: a server that rejects the
        request's bytes (llama.cpp answers a message it cannot parse with a
        500) fails the same way every time, so the second identical answer
        ends the retries instead of four more backoffs.
        """
        if _is_context_overflow(failure):
            raise ContextLengthExceeded(_describe(failure), status_code=400) from failure
        status = getattr(failure, "status_code", None)
        if not _is_retryable(failure):
            raise ModelError(_describe(failure, self.settings), status_code=status) from failure
        if status == 500 and seen is not None:
            signature = _describe(failure)
            if signature in seen:
                raise ModelError(
                    f"{_describe(failure, self.settings)} (gave up after {attempt + 1} attempts: "
                    "the same request failed the same way twice, so the server rejects it "
                    "rather than failing by chance)",
                    status_code=status,
                ) from failure
            seen.add(signature)
        if attempt >= self.settings.max_retries:
            raise ModelError(
                f"{_describe(failure, self.settings)} (gave up after {attempt + 1} attempts)",
                status_code=status,
            ) from failure
        delay = retry_delay(failure, attempt)
        if isinstance(failure, openai.RateLimitError):
            self.gate.pause(delay)
        if on_retry is not None:
            said = on_retry(failure, delay, attempt)
            if said is not None:
                await said
        await trio.sleep(delay)
        return attempt + 1

    def describe_retry(self, failure: Exception, delay: float, attempt: int) -> str:
        """What a waiting user is told: the endpoint, what went wrong, what happens next."""
        where = self.settings.base_url or "the OpenAI API"
        total = self.settings.max_retries + 1
        return (
            f"{where}: {_describe(failure, self.settings)}; retrying in {delay:.1f} s "
            f"(attempt {attempt + 2} of {total})"
        )

    async def stream(
        self,
        encoded_messages: Sequence[bytes],
        tools: Sequence[Mapping[str, Any]] | None,
        on_text: Callable[[str], Any] | None = None,
        on_retry: Callable[[Exception, float, int], Any] | None = None,
        hold_connection: Callable[[Callable[[], None] | None], None] | None = None,
    ) -> ModelTurn:
        """Stream one completion; ``on_text`` sees each text delta as it arrives.

        Cancelling the caller closes the HTTP stream at once (the connection
        is dropped, so the server sees the client go away). While the stream
        is open, ``hold_connection`` is given a function that drops the
        connection synchronously, for a canceller that should not wait for
        this task to unwind (see ``RunControl.cancel``); it gets None after.

        A stream that goes silent for ``stream_idle_timeout`` fails; if it
        had delivered nothing yet (no text, no tool call), the request is
        retried within the same retry budget as a failure before the headers.
        """
        body = build_body(self.settings, encoded_messages, tools, stream=True)
        attempt = 0
        seen: set[str] = set()
        while True:
            response, shard, attempt = await self._open_with_retries(
                body, stream=True, on_retry=on_retry, attempt=attempt, seen=seen
            )
            try:
                return await self._read_stream(response, shard, on_text, hold_connection)
            except SilentStream as exc:
                attempt = await self._before_retry(exc, attempt, on_retry)

    async def _read_stream(
        self,
        response: httpx2.Response,
        shard: _Shard,
        on_text: Callable[[str], Any] | None,
        hold_connection: Callable[[Callable[[], None] | None], None] | None,
    ) -> ModelTurn:
        assembler = _TurnAssembler()
        parser = _SSEParser()
        failure: Exception | None = None
        dropped: list[bool] = []
        if hold_connection is not None:
            hold_connection(_connection_dropper(response, dropped))
        try:
            # Never leave this loop from its body: httpx2 reads through a
            # chain of async generators, and breaking out at a yield would
            # leave them for the garbage collector. We read to the end of
            # the body; on a failure we close the response, which ends the
            # chain from the inside at the next read.
            async for data in response.aiter_bytes():
                if failure is not None:
                    continue
                try:
                    for payload in parser.feed(data):
                        text = assembler.add(payload)
                        if text and on_text is not None:
                            result = on_text(text)
                            if result is not None:
                                await result
                except Exception as exc:
                    failure = exc
                    with trio.CancelScope(shield=True):
                        await response.aclose()
        except (httpx2.HTTPError, openai.APIError) as exc:
            if dropped:
                # We closed the socket because the caller is being cancelled:
                # that is a cancellation, not a failed stream.
                await trio.lowlevel.checkpoint()
            if failure is None:
                if isinstance(exc, httpx2.TimeoutException):
                    idle = self.settings.stream_idle_timeout
                    message = f"no data from the model endpoint for {idle:g} s mid-stream"
                    if assembler.empty:
                        raise SilentStream(message) from exc
                    raise ModelError(message) from exc
                # A reset connection or a broken chunked body mid-stream.
                raise ModelError(f"stream failed: {_describe(exc)}") from exc
        finally:
            if hold_connection is not None:
                hold_connection(None)
            shard.active -= 1
            # Closing is what tells the server we are gone; do it even when
            # cancelled, but never let a stuck close hold the caller.
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                await response.aclose()
        if failure is not None:
            raise failure
        return assembler.finish()

    async def complete(
        self,
        encoded_messages: Sequence[bytes],
        *,
        on_retry: Callable[[Exception, float, int], Any] | None = None,
    ) -> ModelTurn:
        """One non-streaming completion without tools (used for summaries)."""
        body = build_body(self.settings, encoded_messages, None, stream=False)
        response, shard, _ = await self._open_with_retries(
            body, stream=False, on_retry=on_retry, seen=set()
        )
        shard.active -= 1
        completion = cast(ChatCompletion, response)
        error = (completion.model_extra or {}).get("error")
        if error is not None:
            raise _in_body_error(error, "in its response")
        text = ""
        finish: str | None = None
        if completion.choices:
            text = completion.choices[0].message.content or ""
            finish = completion.choices[0].finish_reason
        usage = usage_from(completion.usage)
        if finish == "length" and not text and not usage.get("output_tokens"):
            raise ContextLengthExceeded(_EMPTY_LENGTH, status_code=200)
        return ModelTurn(
            text=text,
            tool_calls=[],
            usage=usage,
            finish_reason=finish,
            usage_known=completion.usage is not None,
        )
