"""A trio-native HTTP/1.1 transport for httpx2: h11 over trio sockets.

The stock transport (httpcore2 on trio) wraps every read in several nested
cancel scopes and keeps per-pool bookkeeping that grows with the pool;
cancelling a thousand streams at once then costs trio a long unwinding.
This one does the minimum an OpenAI-compatible endpoint needs:

* one TCP (or TLS) connection per request in flight, reused when the
  response was read to its end (keep-alive), idle ones kept in a LIFO list
  per origin: checking one out is O(1);
* each socket read and write under one cancel scope with the request's
  timeout (httpx2's ``read``/``write``/``connect`` timeouts), raising
  httpx2's own timeout and network errors;
* the socket exposed as the ``network_stream`` extension, so a run being
  cancelled can close it at once from another task (the provider sees the
  disconnect before the run has unwound).

A reused keep-alive connection that the server closed meanwhile is retried
once on a fresh connection, as httpcore does, but only when nothing of the
response arrived. Proxies from the environment are still honoured: httpx2
routes those URLs to its own proxy transports.

``RHO_ACTORS_HTTP_TRANSPORT=httpx`` selects the stock transport instead.
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import h11
import httpx2
import trio

TRANSPORT_ENV = "RHO_ACTORS_HTTP_TRANSPORT"
TRANSPORTS = ("trio", "httpx")
_RECEIVE_SIZE = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def transport_choice() -> str:
    """``trio`` (this module's) unless ``RHO_ACTORS_HTTP_TRANSPORT`` says ``httpx``."""
    value = (os.environ.get(TRANSPORT_ENV) or "trio").strip().lower()
    if value not in TRANSPORTS:
        raise ValueError(f"{TRANSPORT_ENV}: expected one of {', '.join(TRANSPORTS)}, got {value!r}")
    return value


class _NetworkStream:
    """What the ``network_stream`` extension offers: the socket, to close it early."""

    __slots__ = ("_socket",)

    def __init__(self, sock: Any) -> None:
        self._socket = sock

    def get_extra_info(self, name: str) -> Any:
        return self._socket if name == "socket" else None


class _Connection:
    __slots__ = ("h11", "network", "origin", "reused", "socket", "stream")

    def __init__(self, origin: Origin, stream: trio.abc.Stream, sock: Any) -> None:
        self.origin = origin
        self.stream = stream
        self.socket = sock
        self.h11 = h11.Connection(our_role=h11.CLIENT)
        self.network = _NetworkStream(sock)
        self.reused = False

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def close(self) -> None:
        # Synchronous on purpose: closing the socket wakes any task blocked
        # on it, and works from cleanup code that cannot await.
        with contextlib.suppress(OSError):
            self.socket.close()


class TrioTransport(httpx2.AsyncBaseTransport):
    """HTTP/1.1 over trio sockets; see the module docstring."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext],
        max_idle: int = 64,
    ) -> None:
        # A context, or how to make one when the first https connection
        # needs it: loading the CA bundle takes tens of milliseconds, which
        # a plain-http endpoint (a local server) never needs to pay.
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        timeouts = request.extensions.get("timeout") or {}
        body = await request.aread()
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            try:
                return await self._exchange(conn, request, body, timeouts)
            except _StaleConnection:
                continue  # closed by the server while idle: try the next, or a new one
        conn = await self._connect(origin, timeouts)
        try:
            return await self._exchange(conn, request, body, timeouts)
        except _StaleConnection as exc:
            raise httpx2.RemoteProtocolError(
                "the server closed the connection without a response", request=request
            ) from exc.__cause__

    async def _connect(self, origin: Origin, timeouts: dict[str, Any]) -> _Connection:
        scheme, host, port = origin
        with trio.move_on_after(_seconds(timeouts.get("connect"))) as scope:
            try:
                tcp = await trio.open_tcp_stream(host, port)
            except OSError as exc:
                raise httpx2.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
            stream: trio.abc.Stream = tcp
            if scheme == "https":
                context = self._ssl_context
                if not isinstance(context, ssl.SSLContext):
                    context = self._ssl_context = context()
                tls = trio.SSLStream(tcp, context, server_hostname=host)
                try:
                    await tls.do_handshake()
                except (trio.BrokenResourceError, ssl.SSLError, OSError) as exc:
                    tcp.socket.close()
                    raise httpx2.ConnectError(f"TLS handshake with {host} failed: {exc}") from exc
                stream = tls
            return _Connection(origin, stream, tcp.socket)
        assert scope.cancelled_caught
        raise httpx2.ConnectTimeout(f"connecting to {host}:{port} took too long")

    async def _exchange(
        self, conn: _Connection, request: httpx2.Request, body: bytes, timeouts: dict[str, Any]
    ) -> httpx2.Response:
        """Send the request and read the response head; the body is streamed later."""
        reused = conn.reused
        headers = [(k, v) for k, v in request.headers.raw]
        target = request.url.raw_path
        try:
            # With data passthrough h11 frames the body without copying it: a
            # long history's body (hundreds of KiB) goes out as it is.
            machine = conn.h11
            events: list[Any] = [h11.Request(method=request.method, target=target, headers=headers)]
            if body:
                events.append(h11.Data(data=body))
            events.append(h11.EndOfMessage())
            parts: list[Any] = []
            for event in events:
                parts += machine.send_with_data_passthrough(event) or []
        except h11.LocalProtocolError as exc:
            conn.close()
            raise httpx2.LocalProtocolError(str(exc)) from exc
        try:
            await _send(conn, parts, timeouts)
            event = await _next_event(conn, timeouts)
            while isinstance(event, h11.InformationalResponse):
                event = await _next_event(conn, timeouts)
        except (httpx2.ReadError, httpx2.WriteError, httpx2.RemoteProtocolError) as exc:
            conn.close()
            if reused:
                raise _StaleConnection from exc
            raise
        except BaseException:
            conn.close()
            raise
        if not isinstance(event, h11.Response):
            conn.close()
            raise httpx2.RemoteProtocolError(f"unexpected {type(event).__name__} before a response")
        return httpx2.Response(
            event.status_code,
            headers=event.headers,
            stream=_Body(self, conn, timeouts),
            extensions={
                "http_version": b"HTTP/" + event.http_version,
                "reason_phrase": event.reason,
                "network_stream": conn.network,
            },
        )

    def _release(self, conn: _Connection) -> None:
        """The response was read to the end: keep the connection for the next request."""
        if self._closed or not conn.reusable():
            conn.close()
            return
        try:
            conn.h11.start_next_cycle()
        except h11.LocalProtocolError:
            conn.close()
            return
        conn.reused = True
        idle = self._idle.setdefault(conn.origin, [])
        if len(idle) >= self._max_idle:
            idle.pop(0).close()
        idle.append(conn)

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()
        await trio.lowlevel.checkpoint()


class _StaleConnection(Exception):
    """A reused connection failed before any of the response arrived."""


class _Body(httpx2.AsyncByteStream):
    """A response body, read from the connection as the caller iterates."""

    def __init__(self, transport: TrioTransport, conn: _Connection, timeouts: dict[str, Any]):
        self._transport = transport
        self._conn = conn
        self._timeouts = timeouts
        self._done = False
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while not self._done:
            event = await _next_event(conn, self._timeouts)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._done = True
            else:
                raise httpx2.RemoteProtocolError(f"unexpected {type(event).__name__} in a body")

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        if self._done:
            self._transport._release(self._conn)
        else:
            # Left part way (the caller stopped reading, or was cancelled): the
            # connection is mid-response and cannot serve another request.
            self._conn.close()
        await trio.lowlevel.checkpoint()


def _seconds(value: Any) -> float:
    return float(value) if value is not None else float("inf")


async def _send(conn: _Connection, parts: list[Any], timeouts: dict[str, Any]) -> None:
    """Send the framed request: small ones in one write, a large body on its own."""
    size = sum(len(part) for part in parts)
    chunks = [b"".join(parts)] if size <= _RECEIVE_SIZE else [p for p in parts if len(p)]
    with trio.move_on_after(_seconds(timeouts.get("write"))) as scope:
        try:
            for chunk in chunks:
                await conn.stream.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx2.WriteError(f"sending the request failed: {exc}") from exc
        return
    assert scope.cancelled_caught
    conn.close()
    raise httpx2.WriteTimeout("sending the request took too long")


async def _next_event(conn: _Connection, timeouts: dict[str, Any]) -> Any:
    """The next h11 event, reading from the socket as needed (each read bounded)."""
    machine = conn.h11
    while True:
        try:
            event = machine.next_event()
        except h11.RemoteProtocolError as exc:
            conn.close()
            raise httpx2.RemoteProtocolError(str(exc)) from exc
        if event is not h11.NEED_DATA:
            return event
        with trio.move_on_after(_seconds(timeouts.get("read"))) as scope:
            try:
                data = await conn.stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                conn.close()
                raise httpx2.ReadError(f"reading the response failed: {exc}") from exc
        if scope.cancelled_caught:
            conn.close()
            raise httpx2.ReadTimeout("no data within the read timeout")
        if not data and machine.their_state is h11.SEND_RESPONSE:
            conn.close()
            raise httpx2.RemoteProtocolError("the server closed the connection without a response")
        machine.receive_data(bytes(data))
