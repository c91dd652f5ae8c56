"""A loopback HTTP/1.1 server that speaks the OpenAI Chat Completions protocol.

It exists so agents can be tested through their real HTTP client (retries,
timeouts, SSE parsing, connection reuse) without a network or an API key. It
is deliberately built on raw trio sockets and h11 rather than a web framework:
tests and benchmarks need byte-level control (resets, stalls, malformed
chunks, exact chunk timing under an autojump clock), and benchmarks run it
with thousands of concurrent streams, so each connection is one task and a
few small objects.

Each chat request pops the next scripted reply; when the script is empty the
``default`` responder answers, and without one the request fails with a 500
"script exhausted" so a test that under-scripts fails loudly.

The server's ``dialect`` (a :class:`Dialect`) makes it answer like a server
other than OpenAI's. The default dialect costs the streaming path nothing
beyond reading two flags per reply.
"""

from __future__ import annotations

import collections
import email.utils
import http
import itertools
import json
import math
import os
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Final, TypeVar, assert_never

import attrs
import h11
import trio

from ._script import (
    Dialect,
    Fault,
    FaultKind,
    RecordedRequest,
    Reply,
    Responder,
    RetryAfterHeader,
    ScriptItem,
    Usage,
    ok_responder,
)

__all__ = [
    "DEFAULT_BACKLOG",
    "ScriptedServer",
    "open_scripted_server",
    "serve_scripted",
]

DEFAULT_BACKLOG: Final = 4096
"""Large enough that a benchmark opening thousands of connections at once is
not throttled by SYN retransmits (the kernel still caps it at somaxconn)."""

_RECV_SIZE: Final = 65536
_CHAT_PATHS: Final = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS: Final = frozenset({"/v1/models", "/models"})
_MODEL_NAME: Final = "scripted-model"
_FINGERPRINT: Final = "fp_scripted"
_OPENAI: Final = Dialect()

_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"transfer-encoding", b"chunked"),
    (b"server", b"rho-scripted"),
]
_JSON_HEADERS: Final = [
    (b"content-type", b"application/json"),
    (b"server", b"rho-scripted"),
]
_DONE: Final = b"data: [DONE]\n\n"
_MALFORMED: Final = b"data: {not json\n\n"
_CHUNK_TAIL: Final = b',"logprobs":null,"finish_reason":null}]}\n\n'
_REASONS: Final = {status.value: status.phrase.encode() for status in http.HTTPStatus}
_LINGER_ABORT: Final = struct.pack("ii", 1, 0)

_T = TypeVar("_T")

# Socket descriptors are file descriptors on POSIX only.
_FAST_WRITE: Final = sys.platform != "win32"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class _DropConnection(Exception):
    """The response did not complete, so the connection cannot be reused."""


class ScriptedServer:
    """A scripted OpenAI-compatible model endpoint and what it has seen.

    The timing knobs, ``default`` and ``dialect`` are plain attributes, so a
    test can change them between requests. Counters and :attr:`requests` are
    only mutated from the server's own tasks, in the same trio run as the
    test, so reading them needs no locking.
    """

    def __init__(
        self,
        replies: Iterable[ScriptItem] = (),
        *,
        default: Responder | None = ok_responder,
        first_byte_delay: float = 0.0,
        chunk_delay: float = 0.0,
        chunk_size: int = 8,
        models: Iterable[str] = (_MODEL_NAME,),
        dialect: Dialect = _OPENAI,
    ) -> None:
        if first_byte_delay < 0 or chunk_delay < 0:
            raise ValueError("delays must be >= 0")
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        self.default = default
        self.first_byte_delay = first_byte_delay
        self.chunk_delay = chunk_delay
        self.chunk_size = chunk_size
        self.models = tuple(models)
        self.dialect = dialect
        self.requests: list[RecordedRequest] = []
        self.open_streams = 0
        self.completed_streams = 0
        self.disconnects = 0
        self.connections = 0
        # time.monotonic() when the first chat request arrived: the clock is
        # system-wide, so a benchmark in another process can compare it.
        self.first_request_at: float | None = None
        self._queue: collections.deque[ScriptItem] = collections.deque(replies)
        self._streaming: set[RecordedRequest] = set()
        self._changed = trio.Event()
        self._ids = itertools.count(1)
        self._address: tuple[str, int] | None = None
        self._cancel_scope: trio.CancelScope | None = None
        self._stop_requested = False

    # -- script ---------------------------------------------------------------

    def add(self, *items: ScriptItem) -> None:
        """Append replies (or bare faults) to the script."""
        self._queue.extend(items)

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet (the default responder is not counted)."""
        return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path in _CHAT_PATHS]

    # -- address --------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the scripted server is not listening yet")
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def base_url(self) -> str:
        """The ``base_url`` to give an OpenAI client (it ends in ``/v1``)."""
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/v1"

    # -- waiting --------------------------------------------------------------

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Block until ``predicate()`` holds; it is re-checked on every state change."""
        while not predicate():
            await self._changed.wait()

    async def wait_for_requests(self, n: int) -> None:
        await self.wait_until(lambda: len(self.requests) >= n)

    async def wait_for_disconnects(self, n: int = 1) -> None:
        """Wait until ``n`` clients in total went away before their response ended."""
        await self.wait_until(lambda: self.disconnects >= n)

    async def wait_for_idle(self) -> None:
        """Wait until no stream is being served (e.g. after cancelling clients)."""
        await self.wait_until(lambda: self.open_streams == 0)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- lifecycle ------------------------------------------------------------

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        backlog: int = DEFAULT_BACKLOG,
        task_status: trio.TaskStatus[ScriptedServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until :meth:`stop` or cancellation.

        Meant for ``await nursery.start(server.serve)``, which returns the
        server once its port is bound, so ``base_url`` is usable at once.
        """
        if self._cancel_scope is not None:
            raise RuntimeError("this scripted server is already serving")
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
        try:
            sockname = listeners[0].socket.getsockname()
            self._address = (str(sockname[0]), int(sockname[1]))
            with trio.CancelScope() as scope:
                self._cancel_scope = scope
                if self._stop_requested:
                    scope.cancel(reason="scripted server stopped before it started")
                task_status.started(self)
                await trio.serve_listeners(self._handle_connection, listeners)
        finally:
            for listener in listeners:
                await trio.aclose_forcefully(listener)

    def stop(self) -> None:
        """Stop listening and drop every connection, stalled streams included."""
        self._stop_requested = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel(reason="scripted server stopped")

    # -- connections ----------------------------------------------------------

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, stream)
                if request is None:
                    return
                try:
                    await self._dispatch(conn, stream, request)
                finally:
                    request.finished.set()
                    self._notify()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (_DropConnection, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> RecordedRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._send_bad_request(conn, stream, exc)
                return None
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(_RECV_SIZE))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                return self._record(head, bytes(body))
            else:  # ConnectionClosed, or PAUSED after a client that asked to close
                return None

    async def _send_bad_request(
        self, conn: h11.Connection, stream: trio.SocketStream, exc: h11.RemoteProtocolError
    ) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        payload = _error_body(f"malformed HTTP request: {exc}", "invalid_request_error", None)
        headers = [*_JSON_HEADERS, (b"connection", b"close")]
        await _write(stream, _json_response(conn, 400, payload, headers))

    def _record(self, head: h11.Request, body: bytes) -> RecordedRequest:
        headers: dict[str, str] = {}
        for raw_name, raw_value in head.headers:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        target = head.target.decode("latin-1")
        request = RecordedRequest(
            method=head.method.decode("ascii"),
            path=target.partition("?")[0],
            headers=headers,
            body=body,
            json=parsed,
        )
        if self.first_request_at is None and request.path in _CHAT_PATHS:
            self.first_request_at = time.monotonic()
        self.requests.append(request)
        self._notify()
        return request

    # -- routing --------------------------------------------------------------

    async def _dispatch(
        self, conn: h11.Connection, stream: trio.SocketStream, request: RecordedRequest
    ) -> None:
        if request.path in _CHAT_PATHS:
            if request.method != "POST":
                await self._send_error(
                    conn, stream, request, 405, "use POST", "invalid_request_error"
                )
            elif not isinstance(request.json, dict):
                message = "request body is not a JSON object"
                await self._send_error(conn, stream, request, 400, message, "invalid_request_error")
            else:
                await self._chat(conn, stream, request)
        elif request.path == "/_stats" and request.method == "GET":
            # Counters for a client in another process (benchmarks), which
            # cannot read this object's attributes.
            counters: dict[str, float | None] = {
                "first_request_at": self.first_request_at,
                "requests": len(self.chat_requests),
                "open_streams": self.open_streams,
                "completed_streams": self.completed_streams,
                "disconnects": self.disconnects,
                "connections": self.connections,
            }
            body = _dumps(counters).encode()
            await self._finish(stream, request, _json_response(conn, 200, body))
        elif request.path in _MODELS_PATHS and request.method == "GET":
            payload = {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "rho-scripted"}
                    for m in self.models
                ],
            }
            await self._finish(stream, request, _json_response(conn, 200, _dumps(payload).encode()))
        else:
            message = f"unknown route {request.method} {request.path}"
            await self._send_error(conn, stream, request, 404, message, "invalid_request_error")

    async def _send_error(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        request: RecordedRequest,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = _JSON_HEADERS + (extra_headers or [])
        payload = _error_body(message, type_, code)
        await self._finish(stream, request, _json_response(conn, status, payload, headers))

    def _next_reply(self, request: RecordedRequest) -> Reply | str:
        """The reply to serve, or an error message when there is none."""
        if self._queue:
            item = self._queue.popleft()
        elif self.default is None:
            return (
                f"script exhausted: no scripted reply left for request #{len(self.requests)} "
                "and no default responder"
            )
        else:
            # A responder that raises is a bug in the test: let it crash the
            # server (and so the test) with its own traceback.
            item = self.default(request)
        return Reply.from_fault(item) if isinstance(item, Fault) else item

    async def _chat(
        self, conn: h11.Connection, stream: trio.SocketStream, request: RecordedRequest
    ) -> None:
        if self.dialect.reject_null_content:
            problem = _null_assistant_content(request)
            if problem is not None:
                # Refused before the model would run, so no reply is used up.
                body = _dumps({"error": {"code": 500, "message": problem, "type": "server_error"}})
                await self._finish(stream, request, _json_response(conn, 500, body.encode()))
                return
        if not self.dialect.json_schema:
            requested = request.json.get("response_format")
            if isinstance(requested, dict) and requested.get("type") == "json_schema":
                message = "response_format of type 'json_schema' is not supported by this model"
                await self._send_error(conn, stream, request, 400, message, "invalid_request_error")
                return
        reply = self._next_reply(request)
        if isinstance(reply, str):
            await self._send_error(
                conn, stream, request, 500, reply, "server_error", "script_exhausted"
            )
            return
        request.reply = reply
        # An HTTP error answers a streaming request without opening a stream.
        streaming = request.stream and not (reply.fault is not None and reply.fault.is_http_error)
        if streaming:
            self._streaming.add(request)
            self.open_streams += 1
            self._notify()
        try:
            async with trio.open_nursery() as nursery:
                # Watching the socket while we write is what notices a client
                # that gave up on a stalled or slow stream: without it a
                # disconnect would only surface at the next write, or never.
                nursery.start_soon(self._watch_for_disconnect, conn, stream, request, nursery)
                await self._send_reply(conn, stream, request, reply, streaming)
                nursery.cancel_scope.cancel(reason="response finished")
        finally:
            self._close_stream(request)
        if not request.completed:
            # The client left, or a fault broke the response on purpose: the
            # HTTP exchange is half done, so the connection is unusable.
            raise _DropConnection

    async def _watch_for_disconnect(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        request: RecordedRequest,
        nursery: trio.Nursery,
    ) -> None:
        try:
            while data := await stream.receive_some(_RECV_SIZE):
                conn.receive_data(data)  # a pipelined request, served after this one
        except trio.BrokenResourceError:
            pass  # reset by the peer: as gone as an EOF
        except trio.ClosedResourceError:
            return  # we closed it ourselves (reset fault): not the client's doing
        self._mark_disconnected(request)
        nursery.cancel_scope.cancel(reason="client disconnected")

    async def _finish(
        self,
        stream: trio.SocketStream,
        request: RecordedRequest,
        data: bytes,
        *,
        streaming: bool = False,
    ) -> None:
        """Send the last bytes of a response, counting it complete before they go out.

        The client may act on the final byte before this task runs again; a
        test asserting on the counters right after its call returned must
        already see them. The accounting is undone if the write fails.
        """
        self._account_completion(request, streaming, done=True)
        sent = False
        try:
            await _write(stream, data)
            sent = True
        finally:
            if not sent:
                self._account_completion(request, streaming, done=False)

    def _account_completion(self, request: RecordedRequest, streaming: bool, *, done: bool) -> None:
        request.completed = done
        if streaming:
            if done:
                self._close_stream(request)
                self.completed_streams += 1
            else:
                self._streaming.add(request)
                self.open_streams += 1
                self.completed_streams -= 1
        self._notify()

    def _close_stream(self, request: RecordedRequest) -> None:
        # Counters change the moment a stream ends, however it ends, so a
        # test woken by one event sees the others' effects too.
        if request in self._streaming:
            self._streaming.remove(request)
            self.open_streams -= 1
            self._notify()

    def _mark_disconnected(self, request: RecordedRequest) -> None:
        if request.disconnected or request.completed:
            return
        request.disconnected = True
        request.disconnected_event.set()
        self.disconnects += 1
        self._close_stream(request)
        self._notify()

    # -- replies --------------------------------------------------------------

    async def _send_reply(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        request: RecordedRequest,
        reply: Reply,
        streaming: bool,
    ) -> None:
        """Send one reply; a write failure is recorded as a disconnect, not raised."""
        first_byte_delay = _pick(reply.first_byte_delay, self.first_byte_delay)
        try:
            if first_byte_delay > 0:
                await trio.sleep(first_byte_delay)
            fault = reply.fault
            if fault is not None and fault.where == "empty-stream":
                # The prompt filled the context: no room left for a single token.
                reply = attrs.evolve(
                    reply, content="", calls=(), fault=None, finish_reason="length"
                )
            if fault is not None and fault.is_http_error:
                await self._send_fault_response(conn, stream, request, fault)
            elif streaming:
                await self._send_stream(conn, stream, request, reply)
            else:
                await self._send_completion(conn, stream, request, reply)
        except trio.BrokenResourceError:
            self._mark_disconnected(request)

    async def _send_fault_response(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        request: RecordedRequest,
        fault: Fault,
    ) -> None:
        extra: list[tuple[bytes, bytes]] = []
        if fault.kind is FaultKind.RATE_LIMITED and fault.retry_after is not None:
            extra = _retry_after_headers(fault.retry_after, fault.retry_after_header)
        type_ = _error_type(fault)
        await self._send_error(
            conn, stream, request, fault.status, fault.message, type_, fault.code, extra
        )

    def _abort(self, stream: trio.SocketStream) -> None:
        # SO_LINGER 0 makes close() send an RST instead of a FIN, which is what
        # a crashed proxy or a dropped connection looks like to the client.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ABORT)
        stream.socket.close()

    async def _send_completion(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        request: RecordedRequest,
        reply: Reply,
    ) -> None:
        fault = reply.fault
        if fault is not None:
            if fault.kind is FaultKind.RESET_MID_STREAM:
                self._abort(stream)
                return
            if fault.kind is FaultKind.STALL:
                await trio.sleep_forever()
            if fault.kind is FaultKind.MALFORMED_CHUNK:
                await self._finish(stream, request, _json_response(conn, 200, b"{not json"))
                return
            if fault.where == "stream-error":
                # LiteLLM answers an upstream error it met late with a 200.
                body = _error_body(fault.message, _error_type(fault), fault.code)
                await self._finish(stream, request, _json_response(conn, 200, body))
                return
        number = next(self._ids)
        payload = completion_payload(request, reply, number, self.dialect)
        headers = [*_JSON_HEADERS, (b"x-request-id", f"req_{number}".encode())]
        await self._finish(
            stream, request, _json_response(conn, 200, _dumps(payload).encode(), headers)
        )

    async def _send_stream(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        request: RecordedRequest,
        reply: Reply,
    ) -> None:
        number = next(self._ids)
        chunk_delay = _pick(reply.chunk_delay, self.chunk_delay)
        chunk_size = _pick(reply.chunk_size, self.chunk_size)
        dialect = self.dialect  # read once: a swap mid-stream must not split it
        events, prefix = stream_events(request, reply, number, chunk_size, dialect.repeat_tool_name)
        fault = reply.fault
        due = len(events) if fault is None else min(fault.after_chunks, len(events))

        # h11 frames the head and the terminating chunk and keeps the
        # connection state; body chunks are framed here, since h11 does not
        # track chunked bodies and its per-event validation is a large share
        # of the cost when thousands of streams run at once.
        headers = [*_SSE_HEADERS, (b"x-request-id", f"req_{number}".encode())]
        head = conn.send(h11.Response(status_code=200, headers=headers, reason=b"OK"))
        # An HTTP/1.0 client gets an unframed body ended by closing the
        # connection (h11 has switched the response to that already).
        frame = _frame if conn.their_http_version == b"1.1" else bytes
        if reply.think_time > 0:
            await _write(stream, head)
            head = b""
            await _think(stream, frame, reply.think_time, reply.keepalive)
        if chunk_delay > 0:
            # One write per event so the client sees them arrive spaced out.
            await _write(stream, head + frame(events[0]) if due else head)
            for event in events[1:due]:
                await trio.sleep(chunk_delay)
                await _write(stream, frame(event))
        else:
            # Everything due now goes out in a single write.
            await _write(stream, head + frame(b"".join(events[:due])) if due else head)

        tail: list[bytes] = []
        if fault is not None:
            if chunk_delay > 0:
                await trio.sleep(chunk_delay)
            if fault.kind is FaultKind.RESET_MID_STREAM:
                self._abort(stream)
                return
            if fault.kind is FaultKind.STALL:
                await trio.sleep_forever()
            if fault.where == "stream-error":
                # An error event ends the body; there is no [DONE] after it.
                error = _error_body(fault.message, _error_type(fault), fault.code)
                end = frame(b"data: " + error + b"\n\n") + conn.send(h11.EndOfMessage())
                await self._finish(stream, request, end, streaming=True)
                return
            # MALFORMED_CHUNK: a bad line, then the rest of the reply, so a
            # lenient client that skips bad lines still gets a whole stream.
            await _write(stream, frame(_MALFORMED))
            tail += events[due:]
        tail += stream_end(request, reply, prefix, dialect)
        if chunk_delay > 0:
            await trio.sleep(chunk_delay)
        end = frame(b"".join(tail)) + conn.send(h11.EndOfMessage())
        await self._finish(stream, request, end, streaming=True)


async def _think(
    stream: trio.SocketStream,
    frame: Callable[[bytes], bytes],
    seconds: float,
    keepalive: float | None,
) -> None:
    """Silence before the first chunk, broken only by keep-alive comments."""
    deadline = trio.current_time() + seconds
    if not keepalive:
        await trio.sleep_until(deadline)
        return
    while (left := deadline - trio.current_time()) > 0:
        await trio.sleep(min(keepalive, left))
        if deadline - trio.current_time() > 0:
            await _write(stream, frame(_KEEPALIVE))


_KEEPALIVE = b": keep-alive\n\n"


def _frame(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (never empty: an empty chunk would end the body)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


async def _write(stream: trio.SocketStream, data: bytes) -> None:
    """Send ``data``, skipping trio's per-call machinery when the kernel takes it all.

    A stream write is a few hundred bytes and the socket buffer is almost
    never full, so one non-blocking ``send`` usually suffices; trio's
    ``send_all`` (which waits for writability) only handles the remainder.
    Without the fast path, trio's bookkeeping dominates the server's CPU
    time with thousands of concurrent streams.
    """
    sent = 0
    if _FAST_WRITE:
        try:
            sent = os.write(stream.socket.fileno(), data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise trio.BrokenResourceError(f"client went away: {exc}") from exc
    if sent < len(data):
        await stream.send_all(memoryview(data)[sent:])


def _pick(override: _T | None, fallback: _T) -> _T:
    return fallback if override is None else override


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def completion_payload(
    request: RecordedRequest, reply: Reply, number: int, dialect: Dialect
) -> dict[str, Any]:
    """A non-streamed chat completion answering ``request`` with ``reply``."""
    # Null content only beside tool calls, as in the role chunk of a stream.
    content = reply.content if reply.content or not reply.calls else None
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reply.calls:
        message["tool_calls"] = [
            {
                "id": spec.id or f"call_{number}_{i}",
                "type": "function",
                "function": {"name": spec.name, "arguments": spec.arguments_json},
            }
            for i, spec in enumerate(reply.calls)
        ]
    message["refusal"] = None
    payload: dict[str, Any] = {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model or _MODEL_NAME,
        "system_fingerprint": _FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.effective_finish_reason,
            }
        ],
    }
    if dialect.usage_chunk:
        payload["usage"] = _usage_for(request, reply).to_json()
    return payload


def stream_end(
    request: RecordedRequest, reply: Reply, prefix: bytes, dialect: Dialect
) -> list[bytes]:
    """What closes a stream: the usage chunk if one was asked for, then ``[DONE]``."""
    tail: list[bytes] = []
    stream_options = request.json.get("stream_options") if isinstance(request.json, dict) else None
    if (
        isinstance(stream_options, dict)
        and stream_options.get("include_usage") is True
        and dialect.usage_chunk
    ):
        usage = _dumps(_usage_for(request, reply).to_json()).encode()
        tail.append(prefix + b'[],"usage":' + usage + b"}\n\n")
    tail.append(_DONE)
    return tail


def stream_events(
    request: RecordedRequest,
    reply: Reply,
    number: int,
    chunk_size: int,
    repeat_tool_name: bool = False,
) -> tuple[list[bytes], bytes]:
    """Encode every SSE event of a reply up front.

    Returns the events (role, content, tool-call deltas, final
    ``finish_reason``) and the shared prefix up to ``"choices":`` for the
    usage chunk. The envelope is encoded once per reply and each event only
    JSON-encodes its own delta, which keeps per-chunk cost low under load.
    With ``repeat_tool_name`` every delta of a call carries its id, type and
    name, as llama.cpp sends them.
    """
    model = _dumps(request.model or _MODEL_NAME)
    prefix = (
        f'data: {{"id":"chatcmpl-{number}","object":"chat.completion.chunk",'
        f'"created":{int(time.time())},"model":{model},'
        f'"system_fingerprint":"{_FINGERPRINT}","choices":'
    ).encode()
    open_delta = prefix + b'[{"index":0,"delta":'
    deltas: list[dict[str, Any]] = [
        {"role": "assistant", "content": "" if reply.content or not reply.calls else None}
    ]
    deltas += ({"content": piece} for piece in _split(reply.content, chunk_size))
    for index, spec in enumerate(reply.calls):
        function = {"name": spec.name, "arguments": ""}
        call = {"index": index, "id": spec.id or f"call_{number}_{index}", "type": "function"}
        deltas.append({"tool_calls": [{**call, "function": function}]})
        pieces = _split(spec.arguments_json, chunk_size)
        if repeat_tool_name:
            deltas += (
                {"tool_calls": [{**call, "function": {"name": spec.name, "arguments": piece}}]}
                for piece in pieces
            )
        else:
            deltas += (
                {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
                for piece in pieces
            )
    events = [open_delta + _dumps(delta).encode() + _CHUNK_TAIL for delta in deltas]
    finish = _dumps(reply.effective_finish_reason).encode()
    events.append(open_delta + b'{},"logprobs":null,"finish_reason":' + finish + b"}]}\n\n")
    return events, prefix


def _usage_for(request: RecordedRequest, reply: Reply) -> Usage:
    if reply.usage is not None:
        return reply.usage
    produced = len(reply.content) + sum(len(s.name) + len(s.arguments_json) for s in reply.calls)
    return Usage(
        prompt_tokens=max(1, len(request.body) // 4),
        completion_tokens=max(1, produced // 4) if produced else 0,
    )


def _null_assistant_content(request: RecordedRequest) -> str | None:
    """llama.cpp's complaint about an assistant message with ``"content": null``, if any."""
    for index, message in enumerate(request.messages):
        # A missing key is not the quirk: only an explicit null is refused.
        if (
            message.get("role") == "assistant"
            and "content" in message
            and message["content"] is None
        ):
            return (
                f"Failed to parse messages: Invalid 'content' type in messages[{index}]: "
                "content must be a string or array, got null"
            )
    return None


def _retry_after_headers(seconds: float, style: RetryAfterHeader) -> list[tuple[bytes, bytes]]:
    whole = int(seconds) if seconds == int(seconds) else seconds
    match style:
        case "openai":
            return [
                (b"retry-after", str(whole).encode()),
                (b"retry-after-ms", str(round(seconds * 1000)).encode()),
            ]
        case "seconds":
            return [(b"retry-after", str(whole).encode())]
        case "http-date":
            when = email.utils.formatdate(math.ceil(time.time() + seconds), usegmt=True)
            return [(b"retry-after", when.encode())]
        case "ms":
            return [(b"retry-after-ms", str(round(seconds * 1000)).encode())]
        case "litellm":
            return [(b"llm_provider-retry-after", str(whole).encode())]
        case "none":
            return []
        case _:
            assert_never(style)


def _error_type(fault: Fault) -> str:
    if fault.kind is FaultKind.RATE_LIMITED:
        return "requests"
    if fault.kind is FaultKind.CONTEXT_LENGTH_EXCEEDED:
        return "invalid_request_error"
    return "server_error"


def _error_body(message: str, type_: str, code: str | None) -> bytes:
    error = {"message": message, "type": type_, "param": None, "code": code}
    return _dumps({"error": error}).encode()


def _json_response(
    conn: h11.Connection,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] = _JSON_HEADERS,
) -> bytes:
    head = conn.send(
        h11.Response(
            status_code=status,
            headers=[*headers, (b"content-length", str(len(body)).encode())],
            reason=_REASONS.get(status, b""),
        )
    )
    return head + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())


async def serve_scripted(
    replies: Iterable[ScriptItem] = (),
    *,
    default: Responder | None = ok_responder,
    first_byte_delay: float = 0.0,
    chunk_delay: float = 0.0,
    chunk_size: int = 8,
    dialect: Dialect = _OPENAI,
    host: str = "127.0.0.1",
    port: int = 0,
    backlog: int = DEFAULT_BACKLOG,
    task_status: trio.TaskStatus[ScriptedServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Build a :class:`ScriptedServer` and serve it: ``await nursery.start(serve_scripted)``."""
    server = ScriptedServer(
        replies,
        default=default,
        first_byte_delay=first_byte_delay,
        chunk_delay=chunk_delay,
        chunk_size=chunk_size,
        dialect=dialect,
    )
    await server.serve(host=host, port=port, backlog=backlog, task_status=task_status)


@asynccontextmanager
async def open_scripted_server(
    replies: Iterable[ScriptItem] = (),
    *,
    default: Responder | None = ok_responder,
    first_byte_delay: float = 0.0,
    chunk_delay: float = 0.0,
    chunk_size: int = 8,
    dialect: Dialect = _OPENAI,
    host: str = "127.0.0.1",
    port: int = 0,
    backlog: int = DEFAULT_BACKLOG,
) -> AsyncIterator[ScriptedServer]:
    """Serve in a nursery of our own for the duration of the block."""
    async with trio.open_nursery() as nursery:
        server: ScriptedServer = await nursery.start(
            partial(
                serve_scripted,
                replies,
                default=default,
                first_byte_delay=first_byte_delay,
                chunk_delay=chunk_delay,
                chunk_size=chunk_size,
                dialect=dialect,
                host=host,
                port=port,
                backlog=backlog,
            )
        )
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel(reason="scripted server closed")
