"""A loopback fake of the Daytona API, for driving the real ``daytona`` SDK offline.

Code that runs agents' commands in Daytona sandboxes should be tested through
the real SDK (its request building, its polling, its error translation), the
way agents are tested through the real ``openai`` client against the scripted
model server. This module is that server for Daytona: raw trio sockets and h11,
one process, no network, no account.

What the SDK needs and where the fake answers it:

* The control-plane API lives under ``/api`` (``api_url`` ends in ``/api``).
  Every sandbox the API returns carries ``toolboxProxyUrl``, which the SDK uses
  as the base of every toolbox (daemon) call: ``{toolboxProxyUrl}/{sandbox
  id}/process/execute`` and so on. The fake sets it to its own ``/toolbox``, so
  toolbox calls come back here.
* State changes are instant: a sandbox is ``started`` in the response to its
  create or start, and ``stopped`` in the response to its stop. The SDK
  therefore never waits. Without ``use_deprecated_polling`` the SDK also opens
  a Socket.IO connection to ``{api_url}/socket.io/`` for state events in a
  background thread; the fake answers that with a 404, the SDK notes the
  failure and polls ``GET /sandbox/{id}`` instead (which it never needs to).
  So no ``DaytonaConfig`` flag is needed; ``use_deprecated_polling=True`` only
  avoids the attempt, at the price of a DeprecationWarning.
* Errors use the envelopes of the real services (``statusCode``, ``message``,
  ``code``, ``source``), so the SDK raises its own exceptions: 404 →
  ``DaytonaNotFoundError``, 401 → ``DaytonaAuthenticationError``, 429 →
  ``DaytonaRateLimitError``, a missing file → ``DaytonaFileNotFoundError``, an
  ``exec`` timeout → ``DaytonaProcessExecutionTimeoutError``. A route the fake
  does not implement answers 501, which the SDK raises as a plain
  ``DaytonaError`` naming the route, never as a misleading 404.

Each sandbox is a temporary directory (its root) with ``home/daytona`` (the
home and work dir) and ``tmp`` inside. Commands run with ``bash -c`` in their
own process group. Where bubblewrap works they run under it, with the root
file system read-only, ``/home/daytona`` and ``/tmp`` bound to the sandbox's
directories and a PID namespace per command, so paths look like Daytona's
and killing a command's group ends everything it started. Without bubblewrap
they run plainly with the sandbox's home as cwd, ``HOME`` and ``TMPDIR``
pointing inside the root, and the work dir is reported as its real path. The
file-system calls see the same tree: a sandbox path is mapped into the root
(relative ones against the work dir) and may not leave it, symlinks included.
"""

from __future__ import annotations

import collections
import email.message
import fnmatch
import http
import json
import os
import posixpath
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final, Literal

import attrs
import h11
import trio

from .._sandbox import SandboxProbe, probe_bwrap

__all__ = [
    "DaytonaRequest",
    "FakeDaytona",
    "FakeSandbox",
    "SandboxState",
    "open_fake_daytona",
    "serve_fake_daytona",
]

SandboxState = Literal["started", "stopped", "destroyed"]

_HOME: Final = "/home/daytona"
_USER: Final = "daytona"
_UID: Final = "1000"
_ORGANIZATION: Final = "fake-organization"
_ANY_KEY: Final = "fake-daytona-key"
_RECV_SIZE: Final = 65536
_PAGE_SIZE: Final = 100
# Defaults of the real API when a create leaves them out.
_DEFAULT_CPU, _DEFAULT_MEMORY, _DEFAULT_DISK = 1, 1, 3
_DEFAULT_AUTO_STOP, _DEFAULT_AUTO_ARCHIVE, _DEFAULT_AUTO_DELETE = 15, 10080, -1
# Where a file-content search stops reading a file, and how much it sniffs for NULs.
_FIND_MAX_BYTES: Final = 8 * 1024 * 1024
_BINARY_SNIFF: Final = 8192

_API_SOURCE: Final = "DAYTONA_API"
_DAEMON_SOURCE: Final = "DAYTONA_DAEMON"
_PROXY_SOURCE: Final = "DAYTONA_PROXY"

_REASONS: Final = {status.value: status.phrase.encode() for status in http.HTTPStatus}
_UPLOAD_FIELD: Final = re.compile(r"files\[(\d+)\]\.(path|file)")


@attrs.frozen(slots=True, kw_only=True)
class DaytonaRequest:
    """One request the fake answered, for a test to inspect.

    The SDK's Socket.IO attempts are not recorded (they come from a
    background thread at moments a test cannot control); they are counted in
    :attr:`FakeDaytona.event_stream_attempts`.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    json: Any
    toolbox: bool
    """True for a toolbox (daemon) call, False for a control-plane API call."""
    sandbox_id: str | None
    """The sandbox named in the path (an id, or for API calls possibly a name)."""


@attrs.define(slots=True, kw_only=True, eq=False)
class FakeSandbox:
    """A sandbox and everything the fake knows of it.

    Only the server's own tasks change it (and :meth:`FakeDaytona.vanish`),
    in the same trio run as the test, so a test reads it without locking. A
    deleted sandbox stays in :attr:`FakeDaytona.sandboxes` with ``deleted``
    set, so a test can still check what it was.
    """

    id: str
    name: str
    state: SandboxState
    labels: dict[str, str]
    env: dict[str, str]
    snapshot: str | None
    dockerfile: str | None
    """The Dockerfile of a sandbox created from an image (never built)."""
    cpu: int
    gpu: int
    memory: int
    disk: int
    auto_stop_interval: int
    auto_archive_interval: int
    auto_delete_interval: int
    public: bool
    network_block_all: bool
    target: str
    root: Path
    """The sandbox's directory on this machine; removed when it is deleted."""
    work_dir: str
    """The work dir (and home) as the sandbox sees it."""
    created_at: str
    updated_at: str
    deleted: bool = False
    vanished: bool = False
    """Deleted by :meth:`FakeDaytona.vanish` rather than through the API."""
    _commands: dict[str, _Command] = attrs.field(factory=dict, init=False, repr=False)
    _sessions: dict[str, dict[str, _Command]] = attrs.field(factory=dict, init=False, repr=False)

    @property
    def running_pids(self) -> list[int]:
        """Process-group ids of the commands still running (the leader's pid)."""
        return [c.pid for c in self._commands.values() if c.pid is not None and not c.done.is_set()]


@attrs.define(slots=True, eq=False)
class _Command:
    """A command started in a sandbox, by ``exec`` or in a session."""

    id: str
    command: str
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)
    output: bytearray = attrs.field(factory=bytearray)
    stdout: bytearray = attrs.field(factory=bytearray)
    stderr: bytearray = attrs.field(factory=bytearray)
    pid: int | None = None
    returncode: int | None = None
    killed: bool = False

    @property
    def timed_out(self) -> bool:
        return self.scope.cancelled_caught and not self.killed

    def exit_code(self, *, shell: bool) -> int | None:
        """The exit code as the daemon reports it.

        A command killed by a signal has no exit code of its own: a shell
        reports 128 + the signal (sessions run in one), Go's ``ExitCode()``
        reports -1 (``exec``).
        """
        if self.returncode is None:
            return None
        if self.returncode >= 0:
            return self.returncode
        return 128 - self.returncode if shell else -1

    def kill(self) -> None:
        """SIGKILL the command's whole process group, now; its task reaps it."""
        self.killed = True
        if self.pid is not None and not self.done.is_set():
            _kill_group(self.pid)
        self.scope.cancel(reason="sandbox command killed")


class _HttpError(Exception):
    """Answer the request with this status, in the envelope the real services use."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, source: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or http.HTTPStatus(status).name
        self.source = source


@attrs.frozen(slots=True)
class _Incoming:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@attrs.frozen(slots=True)
class _Response:
    status: int
    body: bytes = b""
    content_type: bytes = b"application/json"


class FakeDaytona:
    """A fake Daytona API and sandbox runner, and what it has seen.

    Build it, then ``await nursery.start(fake.serve)`` (or use
    :func:`open_fake_daytona`). Point the SDK at it with
    ``DaytonaConfig(api_key=fake.api_key, api_url=fake.api_url, target="local")``.
    """

    def __init__(self, *, api_key: str | None = None, bwrap: bool | None = None) -> None:
        """``api_key``: the key a client must send; None accepts any non-empty key.

        ``bwrap``: None runs commands under bubblewrap when it works here,
        True requires it (``serve`` fails without it), False never uses it.
        """
        if api_key is not None and not api_key:
            raise ValueError("api_key must be non-empty (or None to accept any key)")
        self._required_key = api_key
        self._bwrap = bwrap
        self.sandboxes: dict[str, FakeSandbox] = {}
        self.requests: list[DaytonaRequest] = []
        self.event_stream_attempts = 0
        self._faults: collections.deque[tuple[int, str]] = collections.deque()
        self._probe: SandboxProbe | None = None
        self._base: Path | None = None
        self._address: tuple[str, int] | None = None
        self._nursery: trio.Nursery | None = None
        self._cancel_scope: trio.CancelScope | None = None
        self._serving = False
        self._stop_requested = False

    # -- what a client needs --------------------------------------------------

    @property
    def api_key(self) -> str:
        """A key the fake accepts: the required one, or a placeholder when any key goes."""
        return self._required_key or _ANY_KEY

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the fake Daytona is not listening yet")
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def api_url(self) -> str:
        """The ``api_url`` to give ``DaytonaConfig`` (it ends in ``/api``)."""
        return f"{self._origin}/api"

    @property
    def toolbox_url(self) -> str:
        """The ``toolboxProxyUrl`` every sandbox carries."""
        return f"{self._origin}/toolbox"

    @property
    def isolated(self) -> bool:
        """Whether commands run under bubblewrap (decided when serving starts)."""
        return self._probe is not None

    @property
    def _origin(self) -> str:
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    # -- fault hooks ----------------------------------------------------------

    def fail_next(self, status: int = 500, message: str | None = None) -> None:
        """Answer the next request (API or toolbox) with this error instead.

        Calls queue up: two calls fail the next two requests. 429 makes the
        SDK raise ``DaytonaRateLimitError``, 500 ``DaytonaInternalServerError``.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"fail_next needs an error status (400-599), got {status}")
        self._faults.append((status, message or http.HTTPStatus(status).phrase))

    def vanish(self, sandbox_id: str) -> None:
        """Make a sandbox disappear as if its runner lost it, without an API call.

        Its processes are killed and its directory removed (this blocks for
        the moment that takes); from then on the API answers 404 for it and so
        does the toolbox proxy.
        """
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.deleted:
            raise KeyError(f"no live sandbox {sandbox_id!r}")
        sandbox.vanished = True
        self._mark_destroyed(sandbox)
        shutil.rmtree(sandbox.root, ignore_errors=True)

    # -- lifecycle ------------------------------------------------------------

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        task_status: trio.TaskStatus[FakeDaytona] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen and serve until :meth:`stop` or cancellation.

        On the way out every command is killed and every sandbox directory
        removed, even if the test forgot to delete its sandboxes.
        """
        if self._serving:
            raise RuntimeError("this fake Daytona is already serving")
        self._serving = True
        self._probe = await self._choose_isolation()
        base = Path(await trio.to_thread.run_sync(_make_base_dir))
        self._base = base
        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
            try:
                sockname = listeners[0].socket.getsockname()
                self._address = (str(sockname[0]), int(sockname[1]))
                with trio.CancelScope() as scope:
                    self._cancel_scope = scope
                    if self._stop_requested:
                        scope.cancel(reason="fake Daytona stopped before it started")
                    # Commands run in this nursery too, so leaving it kills them.
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        task_status.started(self)
                        await trio.serve_listeners(
                            self._handle_connection, listeners, handler_nursery=nursery
                        )
            finally:
                self._nursery = None
                for listener in listeners:
                    await trio.aclose_forcefully(listener)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(partial(shutil.rmtree, base, ignore_errors=True))

    def stop(self) -> None:
        """Stop serving; commands are killed and sandbox directories removed."""
        self._stop_requested = True
        if self._cancel_scope is not None:
            self._cancel_scope.cancel(reason="fake Daytona stopped")

    async def _choose_isolation(self) -> SandboxProbe | None:
        if self._bwrap is False:
            return None
        probe = await probe_bwrap()
        if probe.available:
            return probe
        if self._bwrap:
            raise RuntimeError(f"bwrap=True but bubblewrap does not work here: {probe.reason}")
        return None

    # -- HTTP -----------------------------------------------------------------

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                try:
                    incoming = await _read_request(conn, stream)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        error = _HttpError(400, f"malformed HTTP request: {exc}")
                        await stream.send_all(_encode(conn, _error_response(error, "?", "?")))
                    return
                if incoming is None:
                    return
                response = await self._respond(incoming)
                await stream.send_all(_encode(conn, response))
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            await trio.aclose_forcefully(stream)

    async def _respond(self, request: _Incoming) -> _Response:
        parts = [urllib.parse.unquote(p) for p in request.path.strip("/").split("/") if p]
        if parts[:2] == ["api", "socket.io"]:
            self.event_stream_attempts += 1
            error = _HttpError(404, "the fake Daytona sends no events; poll instead")
            return _error_response(error, request.method, request.path)
        toolbox = parts[:1] == ["toolbox"]
        source = _PROXY_SOURCE if toolbox else _API_SOURCE
        self.requests.append(
            DaytonaRequest(
                method=request.method,
                path=request.path,
                query=request.query,
                json=request.json(),
                toolbox=toolbox,
                sandbox_id=parts[1] if toolbox and len(parts) > 1 else _sandbox_ref(parts),
            )
        )
        try:
            if not self._authorized(request.headers):
                raise _HttpError(401, "Invalid credentials", source=source)
            if self._faults:
                status, message = self._faults.popleft()
                raise _HttpError(status, message, source=source)
            if toolbox and len(parts) > 1:
                return await self._toolbox(request, parts[1], parts[2:])
            if parts[:1] == ["api"]:
                return await self._api(request, parts[1:])
            raise _not_implemented(request)
        except _HttpError as exc:
            if exc.source is None:
                exc.source = _DAEMON_SOURCE if toolbox else _API_SOURCE
            return _error_response(exc, request.method, request.path)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return self._required_key is None or token == self._required_key

    # -- control-plane API ----------------------------------------------------

    async def _api(self, request: _Incoming, parts: list[str]) -> _Response:
        match request.method, parts:
            case "POST", ["sandbox"]:
                return _json(200, self._dto(await self._create(request)))
            case "GET", ["sandbox"]:
                return _json(200, self._list(request.query))
            case "GET", ["sandbox", ref]:
                return _json(200, self._dto(self._find(ref)))
            case "DELETE", ["sandbox", ref]:
                sandbox = self._find(ref)
                await self._destroy(sandbox)
                return _json(200, self._dto(sandbox))
            case "POST", ["sandbox", ref, "start"]:
                sandbox = self._find(ref)
                self._set_state(sandbox, "started")
                return _json(200, self._dto(sandbox))
            case "POST", ["sandbox", ref, "stop"]:
                sandbox = self._find(ref)
                await self._stop_commands(sandbox)
                self._set_state(sandbox, "stopped")
                return _json(200, self._dto(sandbox))
            case "GET", ["sandbox", ref, "toolbox-proxy-url"]:
                self._find(ref)
                return _json(200, {"url": self.toolbox_url})
            case "PUT", ["sandbox", ref, "labels"]:
                sandbox = self._find(ref)
                sandbox.labels = _str_dict(_body_object(request).get("labels"), "labels")
                sandbox.updated_at = _now()
                return _json(200, {"labels": sandbox.labels})
        raise _not_implemented(request)

    async def _create(self, request: _Incoming) -> FakeSandbox:
        assert self._base is not None
        body = _body_object(request)
        sandbox_id = str(uuid.uuid4())
        name = _optional_str(body, "name") or sandbox_id
        if any(s.name == name and not s.deleted for s in self.sandboxes.values()):
            raise _HttpError(409, f"Sandbox with name {name} already exists")
        build = body.get("buildInfo")
        dockerfile = build.get("dockerfileContent") if isinstance(build, dict) else None
        root = self._base / sandbox_id
        await trio.to_thread.run_sync(_make_sandbox_dirs, root)
        now = _now()
        sandbox = FakeSandbox(
            id=sandbox_id,
            name=name,
            state="started",
            labels=_str_dict(body.get("labels"), "labels"),
            env=_str_dict(body.get("env"), "env"),
            snapshot=_optional_str(body, "snapshot"),
            dockerfile=dockerfile if isinstance(dockerfile, str) else None,
            cpu=_int(body, "cpu", _DEFAULT_CPU),
            gpu=_int(body, "gpu", 0),
            memory=_int(body, "memory", _DEFAULT_MEMORY),
            disk=_int(body, "disk", _DEFAULT_DISK),
            auto_stop_interval=_int(body, "autoStopInterval", _DEFAULT_AUTO_STOP),
            auto_archive_interval=_int(body, "autoArchiveInterval", _DEFAULT_AUTO_ARCHIVE),
            auto_delete_interval=_int(body, "autoDeleteInterval", _DEFAULT_AUTO_DELETE),
            public=bool(body.get("public", False)),
            network_block_all=bool(body.get("networkBlockAll", False)),
            target=_optional_str(body, "target") or "us",
            root=root,
            work_dir=_HOME if self.isolated else str(root / "home" / _USER),
            created_at=now,
            updated_at=now,
        )
        self.sandboxes[sandbox_id] = sandbox
        return sandbox

    def _list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        wanted_labels = _str_dict(_json_param(query, "labels"), "labels")
        id_prefix = _param(query, "id") or ""
        name_prefix = _param(query, "name") or ""
        states = set(query.get("states", []))
        found = [
            s
            for s in self.sandboxes.values()
            if not s.deleted
            and s.id.lower().startswith(id_prefix.lower())
            and s.name.lower().startswith(name_prefix.lower())
            and (not states or s.state in states)
            and all(s.labels.get(k) == v for k, v in wanted_labels.items())
        ]
        start = _int_param(query, "cursor", 0)
        limit = _int_param(query, "limit", _PAGE_SIZE)
        page = found[start : start + limit]
        more = start + limit < len(found)
        return {
            "items": [self._dto(s, listing=True) for s in page],
            "nextCursor": str(start + limit) if more else None,
        }

    def _find(self, ref: str) -> FakeSandbox:
        """The live sandbox with this id, or else this name (as the API resolves it)."""
        sandbox = self.sandboxes.get(ref)
        if sandbox is None:
            sandbox = next((s for s in self.sandboxes.values() if s.name == ref), None)
        if sandbox is None or sandbox.deleted:
            raise _HttpError(404, f"Sandbox with ID or name {ref} not found")
        return sandbox

    def _dto(self, sandbox: FakeSandbox, *, listing: bool = False) -> dict[str, Any]:
        """The sandbox as the API returns it (a list item leaves out what lists omit)."""
        dto: dict[str, Any] = {
            "id": sandbox.id,
            "organizationId": _ORGANIZATION,
            "name": sandbox.name,
            "snapshot": sandbox.snapshot,
            "user": _USER,
            "labels": sandbox.labels,
            "public": sandbox.public,
            "networkBlockAll": sandbox.network_block_all,
            "target": sandbox.target,
            "cpu": sandbox.cpu,
            "gpu": sandbox.gpu,
            "memory": sandbox.memory,
            "disk": sandbox.disk,
            "state": sandbox.state,
            "desiredState": sandbox.state,
            "autoStopInterval": sandbox.auto_stop_interval,
            "autoPauseInterval": 0,
            "autoArchiveInterval": sandbox.auto_archive_interval,
            "autoDeleteInterval": sandbox.auto_delete_interval,
            "createdAt": sandbox.created_at,
            "updatedAt": sandbox.updated_at,
            "lastActivityAt": sandbox.updated_at,
            "daemonVersion": "rho-fake-daytona",
            "toolboxProxyUrl": self.toolbox_url,
        }
        if not listing:
            dto["env"] = sandbox.env
            dto["kvm"] = False
            dto["volumes"] = []
            if sandbox.dockerfile is not None:
                dto["buildInfo"] = {
                    "dockerfileContent": sandbox.dockerfile,
                    "createdAt": sandbox.created_at,
                    "updatedAt": sandbox.created_at,
                    "snapshotRef": f"fake-build-{sandbox.id}",
                }
        return dto

    def _set_state(self, sandbox: FakeSandbox, state: SandboxState) -> None:
        sandbox.state = state
        sandbox.updated_at = _now()

    def _mark_destroyed(self, sandbox: FakeSandbox) -> None:
        sandbox.deleted = True
        self._set_state(sandbox, "destroyed")
        for command in sandbox._commands.values():
            command.kill()
        sandbox._sessions.clear()

    async def _destroy(self, sandbox: FakeSandbox) -> None:
        self._mark_destroyed(sandbox)
        await _wait_done(sandbox._commands.values())
        await trio.to_thread.run_sync(partial(shutil.rmtree, sandbox.root, ignore_errors=True))

    async def _stop_commands(self, sandbox: FakeSandbox) -> None:
        """What stopping a sandbox's container does to its processes: all die."""
        for command in sandbox._commands.values():
            command.kill()
        await _wait_done(sandbox._commands.values())
        sandbox._commands.clear()
        sandbox._sessions.clear()

    # -- toolbox (the daemon in each sandbox, behind the proxy) -----------------

    async def _toolbox(self, request: _Incoming, sandbox_id: str, parts: list[str]) -> _Response:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.deleted:
            raise _HttpError(404, f"sandbox {sandbox_id} not found", source=_PROXY_SOURCE)
        if sandbox.state != "started":
            message = (
                f"bad request: sandbox {sandbox_id} is {sandbox.state}. Is the Sandbox started?"
            )
            raise _HttpError(400, message, source=_PROXY_SOURCE)
        fs = _FileSystem(root=sandbox.root, home=sandbox.work_dir, confined=self.isolated)
        query = request.query
        match request.method, parts:
            case "GET", ["work-dir"] | ["user-home-dir"]:
                return _json(200, {"dir": sandbox.work_dir})
            case "GET", ["version"]:
                return _json(200, {"version": "rho-fake-daytona"})
            case "POST", ["process", "execute"]:
                return await self._execute(sandbox, fs, _body_object(request))
            case "GET", ["process", "session"]:
                sessions = [_session_dto(sid, cmds) for sid, cmds in sandbox._sessions.items()]
                return _json(200, sessions)
            case "POST", ["process", "session"]:
                session_id = _body_object(request).get("sessionId")
                if not isinstance(session_id, str) or not session_id:
                    raise _HttpError(400, "sessionId is required")
                if session_id in sandbox._sessions:
                    raise _HttpError(409, f"session {session_id} already exists")
                sandbox._sessions[session_id] = {}
                return _Response(201)
            case "GET", ["process", "session", session_id]:
                return _json(200, _session_dto(session_id, _session(sandbox, session_id)))
            case "DELETE", ["process", "session", session_id]:
                commands = _session(sandbox, session_id)
                for command in commands.values():
                    command.kill()
                await _wait_done(commands.values())
                del sandbox._sessions[session_id]
                for command_id in commands:
                    sandbox._commands.pop(command_id, None)
                return _Response(204)
            case "POST", ["process", "session", session_id, "exec"]:
                return await self._session_exec(sandbox, fs, session_id, _body_object(request))
            case "GET", ["process", "session", session_id, "command", command_id]:
                command = _session_command(sandbox, session_id, command_id)
                return _json(200, _command_dto(command))
            case "GET", ["process", "session", session_id, "command", command_id, "logs"]:
                if _param(query, "follow") == "true":
                    raise _HttpError(501, "the fake Daytona does not stream logs (follow=true)")
                command = _session_command(sandbox, session_id, command_id)
                return _json(200, _logs_dto(command))
            case "GET", ["files"]:
                depth = _int_param(query, "depth", 1)
                return _json(200, await _fs_call(_list_files, fs, _path_param(query), depth))
            case "DELETE", ["files"]:
                recursive = _param(query, "recursive") == "true"
                await _fs_call(_delete, fs, _path_param(query), recursive)
                return _Response(204)
            case "GET", ["files", "info"]:
                return _json(200, await _fs_call(_file_info_at, fs, _path_param(query)))
            case "POST", ["files", "folder"]:
                mode = _param(query, "mode") or "755"
                await _fs_call(_create_folder, fs, _path_param(query), mode)
                return _Response(201)
            case "GET", ["files", "find"]:
                pattern = _required_param(query, "pattern")
                return _json(200, await _fs_call(_find_in_files, fs, _path_param(query), pattern))
            case "GET", ["files", "search"]:
                pattern = _required_param(query, "pattern")
                files = await _fs_call(_search_names, fs, _path_param(query), pattern)
                return _json(200, {"files": files})
            case "POST", ["files", "move"]:
                source = _required_param(query, "source")
                destination = _required_param(query, "destination")
                await _fs_call(_move, fs, source, destination)
                return _Response(200)
            case "POST", ["files", "bulk-upload"]:
                uploads = _uploads(request)
                return _json(200, {"files": await _fs_call(_write_files, fs, uploads)})
            case "POST", ["files", "bulk-download"]:
                paths = _body_object(request).get("paths")
                if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                    raise _HttpError(400, "paths must be a list of strings")
                boundary = uuid.uuid4().hex
                body = await _fs_call(_download_body, fs, paths, boundary)
                content_type = f"multipart/form-data; boundary={boundary}".encode()
                return _Response(200, body, content_type)
        raise _not_implemented(request)

    async def _execute(
        self, sandbox: FakeSandbox, fs: _FileSystem, body: dict[str, Any]
    ) -> _Response:
        command_line = body.get("command")
        if not isinstance(command_line, str) or not command_line.strip():
            raise _HttpError(400, "command is required")
        env = _str_dict(body.get("envs"), "envs")
        timeout = body.get("timeout")
        cwd = body.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise _HttpError(400, "cwd must be a string")
        cwd = cwd or sandbox.work_dir
        if not await _fs_call(_is_dir, fs, cwd):
            # The daemon cannot start the command and says so in a 200.
            return _json(200, {"exitCode": -1, "result": f"chdir {cwd}: no such file or directory"})
        command = _Command(id=str(uuid.uuid4()), command=command_line)
        if isinstance(timeout, int) and timeout > 0:
            command.scope.relative_deadline = timeout
        await self._start(sandbox, fs, command, cwd=cwd, extra_env=env, merge_output=True)
        await command.done.wait()
        sandbox._commands.pop(command.id, None)
        if command.timed_out:
            message = (
                f"Command execution timed out after {timeout} seconds. The timeout can be "
                "increased by adjusting the timeout parameter in the request."
            )
            raise _HttpError(408, message, code="PROCESS_EXECUTION_TIMEOUT")
        output = command.output.decode("utf-8", "replace")
        return _json(200, {"exitCode": command.exit_code(shell=False), "result": output})

    async def _session_exec(
        self, sandbox: FakeSandbox, fs: _FileSystem, session_id: str, body: dict[str, Any]
    ) -> _Response:
        commands = _session(sandbox, session_id)
        command_line = body.get("command")
        if not isinstance(command_line, str) or not command_line.strip():
            raise _HttpError(400, "command is required")
        command = _Command(id=str(uuid.uuid4()), command=command_line)
        # In the session before it starts, so a delete_session meanwhile kills it.
        commands[command.id] = command
        try:
            await self._start(sandbox, fs, command, cwd=sandbox.work_dir, extra_env={})
        except _HttpError:
            del commands[command.id]
            raise
        if body.get("runAsync") or body.get("async"):
            return _json(202, {"cmdId": command.id})
        await command.done.wait()
        finished = {"cmdId": command.id, "exitCode": command.exit_code(shell=True)}
        return _json(200, finished | _logs_dto(command))

    async def _start(
        self,
        sandbox: FakeSandbox,
        fs: _FileSystem,
        command: _Command,
        *,
        cwd: str,
        extra_env: dict[str, str],
        merge_output: bool = False,
    ) -> None:
        """Start ``command`` in the server's nursery; it outlives the request."""
        assert self._nursery is not None
        env = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": sandbox.work_dir,
            "USER": _USER,
            "LANG": "C.UTF-8",
        }
        if self._probe is None:
            env["TMPDIR"] = str(sandbox.root / "tmp")
            argv = ["bash", "-c", command.command]
            host_cwd = str(fs.host(cwd))
        else:
            argv = _bwrap_argv(self._probe, sandbox, command.command, cwd)
            host_cwd = str(sandbox.root)
        # The test's own environment (API keys included) never reaches a command.
        env |= sandbox.env | extra_env
        sandbox._commands[command.id] = command
        try:
            await self._nursery.start(
                partial(_supervise, command, argv, cwd=host_cwd, env=env, merge_output=merge_output)
            )
        except OSError as exc:
            # Nothing runs, so nothing will ever finish it: finish it here.
            del sandbox._commands[command.id]
            command.done.set()
            raise _HttpError(500, f"could not start the command: {exc}") from exc


# -- commands -------------------------------------------------------------------


async def _supervise(
    command: _Command,
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    merge_output: bool,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one command to its end, its deadline or its kill, collecting its output.

    It gets a process group of its own (a session), so a kill reaches what
    it started too. A command that ended normally is left alone: like the
    daemon, the fake does not hunt for its background children.
    """
    process = await trio.lowlevel.open_process(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    command.pid = process.pid
    task_status.started()
    finished = False
    try:
        with command.scope:
            async with trio.open_nursery() as pumps:
                assert process.stdout is not None
                pumps.start_soon(
                    _pump, process.stdout, command, None if merge_output else command.stdout
                )
                if process.stderr is not None:
                    pumps.start_soon(_pump, process.stderr, command, command.stderr)
                await process.wait()
            finished = True
    finally:
        if not finished:
            _kill_group(process.pid)
        with trio.CancelScope(shield=True):
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    await pipe.aclose()
            await process.wait()
        command.returncode = process.returncode
        command.done.set()


async def _pump(stream: trio.abc.ReceiveStream, command: _Command, own: bytearray | None) -> None:
    async for chunk in stream:
        command.output += chunk
        if own is not None:
            own += chunk


async def _wait_done(commands: Iterable[_Command]) -> None:
    for command in list(commands):
        await command.done.wait()


def _kill_group(pgid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _bwrap_argv(probe: SandboxProbe, sandbox: FakeSandbox, command: str, cwd: str) -> list[str]:
    """``bash -c command`` under bubblewrap, seeing the sandbox where Daytona puts it.

    ``/home`` is a fresh tmpfs so the sandbox's home can be mounted at
    ``/home/daytona`` whatever the host has there. The flags otherwise
    follow ``rho_actors._sandbox.wrap_command``, whose trial run ``probe``
    is: a PID namespace that dies with bwrap, so a kill of bwrap's process
    group ends every process of the command.
    """
    argv = [
        probe.executable or "bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--tmpfs", "/home",
        "--bind", str(sandbox.root / "home" / _USER), _HOME,
        "--bind", str(sandbox.root / "tmp"), "/tmp",
        "--chdir", cwd,
        "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--hostname", sandbox.id[:12],
        "--die-with-parent", "--new-session",
    ]  # fmt: skip
    if probe.user_namespace:
        argv += ["--unshare-user", "--uid", _UID, "--gid", _UID]
    argv += ["--cap-drop", "ALL"]
    if sandbox.network_block_all:
        argv.append("--unshare-net")
    return [*argv, "--", "bash", "-c", command]


def _session(sandbox: FakeSandbox, session_id: str) -> dict[str, _Command]:
    commands = sandbox._sessions.get(session_id)
    if commands is None:
        raise _HttpError(404, f"session {session_id} not found")
    return commands


def _session_command(sandbox: FakeSandbox, session_id: str, command_id: str) -> _Command:
    command = _session(sandbox, session_id).get(command_id)
    if command is None:
        raise _HttpError(404, f"command {command_id} not found", code="PROCESS_NOT_FOUND")
    return command


def _command_dto(command: _Command) -> dict[str, Any]:
    return {"id": command.id, "command": command.command, "exitCode": command.exit_code(shell=True)}


def _session_dto(session_id: str, commands: dict[str, _Command]) -> dict[str, Any]:
    return {"sessionId": session_id, "commands": [_command_dto(c) for c in commands.values()]}


def _logs_dto(command: _Command) -> dict[str, str]:
    return {
        "output": command.output.decode("utf-8", "replace"),
        "stdout": command.stdout.decode("utf-8", "replace"),
        "stderr": command.stderr.decode("utf-8", "replace"),
    }


# -- file system ----------------------------------------------------------------


@attrs.frozen(slots=True)
class _FileSystem:
    """A sandbox's files as its API sees them: sandbox paths mapped into its root.

    ``confined`` (commands run under bubblewrap) means every sandbox path is
    relative to the root, as in a chroot. Otherwise the sandbox's paths are
    real paths inside the root, and any other absolute path is still mapped
    into the root, so nothing lands outside it.
    """

    root: Path
    home: str
    confined: bool

    def host(self, path: str) -> Path:
        """Where ``path`` (absolute, or relative to the work dir) lives on this machine."""
        sandbox_path = posixpath.normpath(posixpath.join(self.home, path))
        candidate = Path(sandbox_path)
        if self.confined or not candidate.is_relative_to(self.root):
            candidate = self.root / sandbox_path.lstrip("/")
        real = Path(os.path.realpath(candidate))
        if not real.is_relative_to(self.root):
            raise _HttpError(403, f"{path} leads outside the sandbox", code="FILE_ACCESS_DENIED")
        return candidate

    def sandbox_path(self, host: Path) -> str:
        if not self.confined:
            return str(host)
        return "/" + host.relative_to(self.root).as_posix() if host != self.root else "/"


async def _fs_call(function: Any, *args: Any) -> Any:
    """Run a blocking file-system handler in a thread; OS errors become 500s."""
    return await trio.to_thread.run_sync(partial(_translate_os_errors, function, *args))


def _translate_os_errors(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except FileNotFoundError as exc:
        raise _HttpError(
            404, f"no such file or directory: {exc.filename}", code="FILE_NOT_FOUND"
        ) from exc
    except PermissionError as exc:
        raise _HttpError(
            403, f"permission denied: {exc.filename}", code="FILE_ACCESS_DENIED"
        ) from exc
    except OSError as exc:
        raise _HttpError(500, f"{exc.strerror or exc}: {exc.filename}") from exc


def _is_dir(fs: _FileSystem, path: str) -> bool:
    try:
        return fs.host(path).is_dir()
    except _HttpError:
        return False


def _stat(fs: _FileSystem, path: str) -> tuple[Path, os.stat_result]:
    host = fs.host(path)
    try:
        return host, host.stat()
    except FileNotFoundError:
        raise _HttpError(404, f"file not found: {path}", code="FILE_NOT_FOUND") from None


def _file_info(fs: _FileSystem, host: Path, info: os.stat_result) -> dict[str, Any]:
    modified = datetime.fromtimestamp(info.st_mtime, UTC)
    return {
        "name": host.name,
        "path": fs.sandbox_path(host),
        "isDir": stat.S_ISDIR(info.st_mode),
        "size": info.st_size,
        "mode": stat.filemode(info.st_mode),
        "permissions": f"{stat.S_IMODE(info.st_mode):04o}",
        "owner": _USER,
        "group": _USER,
        "modifiedAt": modified.isoformat().replace("+00:00", "Z"),
        # Go's time.String() layout, which the daemon still sends.
        "modTime": modified.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC"),
    }


def _file_info_at(fs: _FileSystem, path: str) -> dict[str, Any]:
    host, info = _stat(fs, path)
    return _file_info(fs, host, info)


def _list_files(fs: _FileSystem, path: str, depth: int) -> list[dict[str, Any]]:
    host, info = _stat(fs, path)
    if not stat.S_ISDIR(info.st_mode):
        raise _HttpError(400, f"not a directory: {path}", code="INVALID_FILE_PATH")
    listed: list[dict[str, Any]] = []

    def walk(directory: Path, level: int) -> None:
        for entry in sorted(directory.iterdir()):
            try:
                entry_info = entry.stat()
            except OSError:
                entry_info = entry.lstat()  # a dangling symlink is still listed
            listed.append(_file_info(fs, entry, entry_info))
            if level < depth and stat.S_ISDIR(entry_info.st_mode) and not entry.is_symlink():
                walk(entry, level + 1)

    walk(host, 1)
    return listed


def _create_folder(fs: _FileSystem, path: str, mode: str) -> None:
    try:
        permissions = int(mode, 8)
    except ValueError:
        raise _HttpError(400, f"invalid mode {mode!r}: expected octal digits") from None
    fs.host(path).mkdir(mode=permissions, parents=True, exist_ok=True)


def _delete(fs: _FileSystem, path: str, recursive: bool) -> None:
    host = fs.host(path)
    if host == fs.root or host == fs.host(fs.home):
        raise _HttpError(400, f"refusing to delete {path}", code="INVALID_FILE_PATH")
    if host.is_symlink() or not host.is_dir():
        host.unlink()
    elif recursive:
        shutil.rmtree(host)
    else:
        try:
            host.rmdir()
        except OSError:
            message = f"directory {path} is not empty; delete it with recursive=True"
            raise _HttpError(400, message, code="BAD_REQUEST") from None


def _move(fs: _FileSystem, source: str, destination: str) -> None:
    os.rename(fs.host(source), fs.host(destination))


def _find_in_files(fs: _FileSystem, path: str, pattern: str) -> list[dict[str, Any]]:
    """Lines matching ``pattern`` (a regular expression, or literal text if it is not one)."""
    try:
        regex = re.compile(pattern)
    except re.error:
        regex = re.compile(re.escape(pattern))
    matches: list[dict[str, Any]] = []
    for file in _files_under(fs.host(path)):
        try:
            with open(file, "rb") as handle:
                data = handle.read(_FIND_MAX_BYTES)
        except OSError:
            continue
        if b"\0" in data[:_BINARY_SNIFF]:
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if regex.search(line):
                matches.append({"file": fs.sandbox_path(file), "line": number, "content": line})
    return matches


def _search_names(fs: _FileSystem, path: str, pattern: str) -> list[str]:
    """Paths under ``path`` whose name matches the glob ``pattern``."""
    host = fs.host(path)
    if not host.exists():
        raise FileNotFoundError(2, "no such file or directory", path)
    found: list[str] = []
    for directory, dirs, files in os.walk(host):
        dirs.sort()
        for name in sorted([*dirs, *files]):
            if fnmatch.fnmatchcase(name, pattern):
                found.append(fs.sandbox_path(Path(directory) / name))
    return found


def _files_under(host: Path) -> Iterator[Path]:
    if host.is_file():
        yield host
        return
    if not host.exists():
        raise FileNotFoundError(2, "no such file or directory", str(host))
    for directory, dirs, files in os.walk(host):
        dirs.sort()
        for name in sorted(files):
            yield Path(directory) / name


def _uploads(request: _Incoming) -> list[tuple[str, bytes]]:
    """(destination, content) of each file in a bulk upload, in order."""
    paths: dict[int, str] = {}
    contents: dict[int, bytes] = {}
    for field, value in _form_parts(request.body, request.headers.get("content-type", "")):
        match = _UPLOAD_FIELD.fullmatch(field)
        if match is None:
            continue
        index = int(match.group(1))
        if match.group(2) == "path":
            paths[index] = value.decode("utf-8", "replace")
        else:
            contents[index] = value
    if set(paths) != set(contents):
        raise _HttpError(400, "every files[i].file needs a files[i].path and vice versa")
    return [(paths[i], contents[i]) for i in sorted(paths)]


def _write_files(fs: _FileSystem, uploads: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    written = []
    for path, content in uploads:
        host = fs.host(path)
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_bytes(content)
        written.append({"path": fs.sandbox_path(host), "bytes": len(content)})
    return written


def _download_body(fs: _FileSystem, paths: list[str], boundary: str) -> bytes:
    """A multipart body with a ``file`` part per readable path and an ``error`` part per other.

    Each part names its path as requested, byte for byte, because that is
    how the SDK matches parts to requests.
    """
    chunks: list[bytes] = []
    for path in paths:
        try:
            host, info = _stat(fs, path)
            if stat.S_ISDIR(info.st_mode):
                raise _HttpError(400, f"{path} is a directory", code="INVALID_FILE_PATH")
            name, content_type, data = "file", "application/octet-stream", host.read_bytes()
        except (_HttpError, OSError) as exc:
            error = exc if isinstance(exc, _HttpError) else _HttpError(500, str(exc))
            payload = {
                "message": error.message,
                "statusCode": error.status,
                "code": error.code,
                "source": _DAEMON_SOURCE,
            }
            name, content_type, data = "error", "application/json", json.dumps(payload).encode()
        quoted = path.replace("\\", "\\\\").replace('"', '\\"')
        encoded = urllib.parse.quote(path, safe="")
        disposition = f'form-data; name="{name}"; filename="{quoted}"; filename*=UTF-8\'\'{encoded}'
        chunks.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: {content_type}\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks)


def _form_parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """(field name, value) of a ``multipart/form-data`` body, exactly as sent."""
    header = email.message.Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise _HttpError(400, "expected a multipart/form-data body with a boundary")
    parts: list[tuple[str, bytes]] = []
    for chunk in (b"\r\n" + body).split(b"\r\n--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):
            break
        _, _, chunk = chunk.partition(b"\r\n")  # the rest of the boundary line
        head, separator, value = chunk.partition(b"\r\n\r\n")
        if not separator:
            raise _HttpError(400, "malformed multipart part")
        part = email.message.Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, field_value = line.partition(":")
            part[key.strip()] = field_value.strip()
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            parts.append((name, value))
    return parts


# -- HTTP plumbing ----------------------------------------------------------------


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> _Incoming | None:
    head: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(_RECV_SIZE))
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and head is not None:
            headers: dict[str, str] = {}
            for name, value in head.headers:
                headers[name.decode("latin-1").lower()] = value.decode("latin-1")
            path, _, query = head.target.decode("latin-1").partition("?")
            return _Incoming(
                method=head.method.decode("ascii"),
                path=path,
                query=urllib.parse.parse_qs(query, keep_blank_values=True),
                headers=headers,
                body=bytes(body),
            )
        else:  # ConnectionClosed, or PAUSED after a client that asked to close
            return None


def _encode(conn: h11.Connection, response: _Response) -> bytes:
    headers = [(b"server", b"rho-fake-daytona")]
    if response.status != 204:
        headers += [
            (b"content-type", response.content_type),
            (b"content-length", str(len(response.body)).encode()),
        ]
    data = conn.send(
        h11.Response(
            status_code=response.status,
            headers=headers,
            reason=_REASONS.get(response.status, b""),
        )
    )
    if response.body and response.status != 204:
        data += conn.send(h11.Data(data=response.body))
    return data + conn.send(h11.EndOfMessage())


def _json(status: int, payload: Any) -> _Response:
    return _Response(status, json.dumps(payload, ensure_ascii=False).encode())


def _error_response(error: _HttpError, method: str, path: str) -> _Response:
    """The error envelope the API, the proxy and the daemon share."""
    payload = {
        "statusCode": error.status,
        "message": error.message,
        "error": http.HTTPStatus(error.status).phrase,
        "code": error.code,
        "source": error.source,
        "path": path,
        "method": method,
        "timestamp": _now(),
    }
    return _json(error.status, payload)


def _not_implemented(request: _Incoming) -> _HttpError:
    """A 501, not a 404: a test must not mistake a gap in the fake for a missing sandbox."""
    return _HttpError(501, f"the fake Daytona does not implement {request.method} {request.path}")


def _body_object(request: _Incoming) -> dict[str, Any]:
    body = request.json()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _HttpError(400, "the request body must be a JSON object")
    return body


def _str_dict(value: Any, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _HttpError(400, f"{field} must be an object of strings")
    return dict(value)


def _optional_str(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise _HttpError(400, f"{field} must be a string")
    return value


def _int(body: dict[str, Any], field: str, default: int) -> int:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _HttpError(400, f"{field} must be an integer")
    return value


def _param(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


def _required_param(query: dict[str, list[str]], name: str) -> str:
    value = _param(query, name)
    if value is None:
        raise _HttpError(400, f"the query parameter {name} is required")
    return value


def _path_param(query: dict[str, list[str]]) -> str:
    return _required_param(query, "path")


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    value = _param(query, name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise _HttpError(400, f"the query parameter {name} must be an integer") from None


def _json_param(query: dict[str, list[str]], name: str) -> Any:
    value = _param(query, name)
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise _HttpError(400, f"the query parameter {name} must be JSON") from None


def _sandbox_ref(parts: list[str]) -> str | None:
    return parts[2] if parts[:2] == ["api", "sandbox"] and len(parts) > 2 else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _make_base_dir() -> str:
    return os.path.realpath(tempfile.mkdtemp(prefix="rho-fake-daytona-"))


def _make_sandbox_dirs(root: Path) -> None:
    (root / "home" / _USER).mkdir(parents=True)
    (root / "tmp").mkdir()


async def serve_fake_daytona(
    *,
    api_key: str | None = None,
    bwrap: bool | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[FakeDaytona] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Build a :class:`FakeDaytona` and serve it: ``await nursery.start(serve_fake_daytona)``."""
    fake = FakeDaytona(api_key=api_key, bwrap=bwrap)
    await fake.serve(host=host, port=port, task_status=task_status)


@asynccontextmanager
async def open_fake_daytona(
    *,
    api_key: str | None = None,
    bwrap: bool | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[FakeDaytona]:
    """Serve in a nursery of our own for the duration of the block."""
    async with trio.open_nursery() as nursery:
        fake: FakeDaytona = await nursery.start(
            partial(serve_fake_daytona, api_key=api_key, bwrap=bwrap, host=host, port=port)
        )
        try:
            yield fake
        finally:
            fake.stop()
