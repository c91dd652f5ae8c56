"""The scripted model without sockets: an httpx2 transport inside the process.

``open_in_process_model()`` answers the same scripts as the loopback
:class:`ScriptedServer` (the same SSE and JSON bodies, built by the same
functions) through an ``httpx2.AsyncBaseTransport``, so the real openai
client parses real responses while no byte touches the kernel. Two uses:

* unit tests that need a model but not the network (faster, and no port);
* measuring the framework's own cost: what a run spends outside the
  network stack (``bench/bench_overhead.py``).

Its ``base_url`` is an address nothing listens on; sessions reach the
transport because the model client looks the URL up among the in-process
endpoints first. The loopback server stays the one to use for anything
about sockets: disconnects, stalls seen from the server, slow clients.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import trio

from .._llm import IN_PROCESS_TRANSPORTS
from ._script import (
    Dialect,
    FaultKind,
    RecordedRequest,
    Reply,
    Responder,
    ScriptItem,
    ok_responder,
)
from ._server import (
    _error_body,
    _error_type,
    _retry_after_headers,
    completion_payload,
    stream_end,
    stream_events,
)

_ids = itertools.count(1)
_CHAT_PATH = "/chat/completions"


class InProcessModel(httpx2.AsyncBaseTransport):
    """A scripted model answering through an httpx2 transport (see the module docstring).

    ``add`` queues replies and faults as on the loopback server; ``default``
    answers when the script is empty; ``requests`` records what came in.
    Faults that concern a socket (a reset, a stall) behave as a client sees
    them: a reset is a read error mid-stream, a stall never sends more.
    """

    def __init__(
        self,
        replies: Iterable[ScriptItem] = (),
        *,
        default: Responder | None = ok_responder,
        dialect: Dialect | None = None,
        chunk_size: int = 16,
    ) -> None:
        self._queue: deque[ScriptItem] = deque(replies)
        self.default = default
        self.dialect = dialect or Dialect()
        self.chunk_size = chunk_size
        self.requests: list[RecordedRequest] = []
        self.base_url = f"http://in-process-{next(_ids)}.invalid/v1"

    def add(self, *items: ScriptItem) -> None:
        self._queue.extend(items)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith(_CHAT_PATH)]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in request.headers.raw},
            body=body,
            json=parsed,
        )
        self.requests.append(recorded)
        if not recorded.path.endswith(_CHAT_PATH):
            return _error(404, f"unknown route {request.method} {recorded.path}")
        item = self._queue.popleft() if self._queue else None
        if item is None:
            if self.default is None:
                return _error(500, "script exhausted", code="script_exhausted")
            item = self.default(recorded)
        reply = item if isinstance(item, Reply) else Reply.from_fault(item)
        recorded.reply = reply
        fault = reply.fault
        if fault is not None and fault.is_http_error:
            headers = []
            if fault.kind is FaultKind.RATE_LIMITED and fault.retry_after is not None:
                headers = _retry_after_headers(fault.retry_after, fault.retry_after_header)
            return _error(
                fault.status,
                fault.message,
                code=fault.code,
                type_=_error_type(fault),
                headers=[(k.decode(), v.decode()) for k, v in headers],
            )
        read_timeout = _read_timeout(request)
        first_byte = reply.first_byte_delay or 0.0
        if first_byte:
            await _wait(first_byte, read_timeout)
        if fault is not None and fault.kind is FaultKind.STALL and not recorded.stream:
            await _wait(math.inf, read_timeout)
        number = next(_ids)
        if not recorded.stream:
            payload = completion_payload(recorded, reply, number, self.dialect)
            recorded.completed = True
            return httpx2.Response(
                200, headers={"content-type": "application/json"}, content=json.dumps(payload)
            )
        return httpx2.Response(
            200,
            headers={"content-type": "text/event-stream"},
            stream=_Stream(recorded, reply, number, self, read_timeout),
        )


class _Stream(httpx2.AsyncByteStream):
    """One SSE body, produced as it is read."""

    def __init__(
        self,
        request: RecordedRequest,
        reply: Reply,
        number: int,
        model: InProcessModel,
        read_timeout: float | None,
    ) -> None:
        self._request = request
        self._reply = reply
        self._number = number
        self._model = model
        # What a socket read would wait at most: the client's idle limit.
        self._read_timeout = read_timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        request, reply, dialect = self._request, self._reply, self._model.dialect
        chunk_size = reply.chunk_size or self._model.chunk_size
        events, prefix = stream_events(
            request, reply, self._number, chunk_size, dialect.repeat_tool_name
        )
        fault = reply.fault
        due = len(events) if fault is None else min(fault.after_chunks, len(events))
        delay = reply.chunk_delay or 0.0
        for event in events[:due]:
            if delay:
                await _wait(delay, self._read_timeout)
            yield event
        if fault is not None:
            if fault.kind is FaultKind.RESET_MID_STREAM:
                raise httpx2.ReadError("connection reset (scripted)")
            if fault.kind is FaultKind.STALL:
                await _wait(math.inf, self._read_timeout)
            if fault.where == "stream-error":
                yield b"data: " + _error_body(fault.message, _error_type(fault), fault.code)
                yield b"\n\n"
                request.completed = True
                return
            yield b"data: {not json\n\n"
            for event in events[due:]:
                yield event
        for part in stream_end(request, reply, prefix, dialect):
            yield part
        request.completed = True

    async def aclose(self) -> None:
        if not self._request.completed:
            self._request.disconnected = True


def _read_timeout(request: httpx2.Request) -> float | None:
    timeout = request.extensions.get("timeout")
    value = timeout.get("read") if isinstance(timeout, dict) else None
    return float(value) if value is not None else None


async def _wait(seconds: float, read_timeout: float | None) -> None:
    """Silence from the "server": a read gives up after its timeout, as on a socket."""
    if read_timeout is not None and seconds > read_timeout:
        await trio.sleep(read_timeout)
        raise httpx2.ReadTimeout("no data within the read timeout (scripted)")
    if math.isinf(seconds):
        await trio.sleep_forever()
    await trio.sleep(seconds)


def _error(
    status: int,
    message: str,
    *,
    code: str | None = None,
    type_: str = "server_error",
    headers: list[tuple[str, str]] | None = None,
) -> httpx2.Response:
    return httpx2.Response(
        status,
        headers=[("content-type", "application/json"), *(headers or [])],
        content=_error_body(message, type_, code),
    )


@asynccontextmanager
async def open_in_process_model(
    replies: Iterable[ScriptItem] = (),
    *,
    default: Responder | None = ok_responder,
    dialect: Dialect | None = None,
) -> AsyncIterator[InProcessModel]:
    """An :class:`InProcessModel` reachable at its ``base_url`` for the block."""
    model = InProcessModel(replies, default=default, dialect=dialect)
    IN_PROCESS_TRANSPORTS[model.base_url] = model
    try:
        yield model
    finally:
        IN_PROCESS_TRANSPORTS.pop(model.base_url, None)
