"""Daytona sandboxes: the seed's remote backend, through Daytona's own SDK.

Daytona's maintained Python package is ``daytona`` (``daytona-sdk`` is its
deprecated alias, kept only so old installs resolve), installed with
``pip install 'rho-actors[daytona]'``. Its async client runs on asyncio
(aiohttp), which a trio program cannot host, so every call goes to the
*synchronous* client in a worker thread, behind one limiter: nothing here
blocks the event loop, and a slow Daytona API holds a thread, not a run.

A :class:`RemoteSandbox` is one Daytona sandbox that belongs to one
session. It is created on first use, carries labels that say who made it
(``created-by: rho-actors``, the session id, and the host process as
``host:pid``) and Daytona's own backstops (auto-stop after
``auto_stop_interval`` idle minutes, auto-delete ``auto_delete_interval``
minutes after stopping), so a host killed with ``kill -9`` leaves nothing
running for long, and :func:`sweep_sandboxes` finds what a dead host left.

Long commands run as Daytona *session commands*: started asynchronously and
polled, so that cancelling the caller deletes the Daytona session, which
stops the remote process, instead of waiting for ``exec`` to return.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import trio

from ._actor import RunLimiter
from ._errors import ConfigError, RhoError

logger = logging.getLogger("rho_actors.sandbox")

__all__ = [
    "DaytonaBackend",
    "RemoteSandbox",
    "SandboxError",
    "list_sandboxes",
    "sweep_sandboxes",
]

_T = TypeVar("_T")

CREATED_BY = "rho-actors"
LABEL_CREATED_BY = "created-by"
LABEL_SESSION = "rho-actors-session"
LABEL_HOST = "rho-actors-host"

# Daytona API calls running at once in worker threads.
_CALLS = RunLimiter("rho_daytona_calls", 16)
# How often a running remote command is polled for its exit.
POLL_INTERVAL = 0.2
# The longest one Daytona API call may take (creating a sandbox from an image
# included) before it is abandoned as unanswered.
API_CALL_TIMEOUT = 180.0


class SandboxError(RhoError):
    """A Daytona sandbox could not be created, reached or used; the message names it."""


@attrs.frozen(kw_only=True)
class DaytonaBackend:
    """Where and how a session's Daytona sandbox is made.

    Unset connection fields come from the environment as Daytona's SDK
    reads it (``DAYTONA_API_KEY``, ``DAYTONA_API_URL``, ``DAYTONA_TARGET``).
    ``auto_stop_interval`` and ``auto_delete_interval`` are minutes: the
    backstops that clean up after a host that died without deleting.
    """

    api_key: str | None = attrs.field(default=None, repr=False)
    api_url: str | None = None
    target: str | None = None
    snapshot: str | None = None
    image: str | None = None
    cpu: int | None = None
    memory: int | None = None
    disk: int | None = None
    env_vars: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    auto_stop_interval: int = 15
    auto_delete_interval: int = 30
    name: str = "daytona"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str | None = None) -> DaytonaBackend:
        """The backend a config file describes (``backend: {type: daytona, ...}``)."""
        known = {f.name for f in attrs.fields(cls)} - {"api_key", "name"}
        fields: dict[str, Any] = {}
        for key, value in data.items():
            if key == "type":
                continue
            if key == "api_key":
                raise ConfigError(
                    "API keys do not belong in config files",
                    file=source,
                    key="backend.api_key",
                    expected="the DAYTONA_API_KEY environment variable",
                )
            if key not in known:
                raise ConfigError(
                    "unknown key",
                    file=source,
                    key=f"backend.{key}",
                    expected="one of " + ", ".join(sorted(known)),
                )
            fields[key] = value
        try:
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise ConfigError(str(exc), file=source, key="backend") from None

    def to_mapping(self) -> dict[str, Any]:
        """As written to a config: never the key or the environment's values."""
        out: dict[str, Any] = {"type": "daytona"}
        for f in attrs.fields(DaytonaBackend):
            if f.name in ("api_key", "name", "env_vars"):
                continue
            value = getattr(self, f.name)
            if value not in (None, {}):
                out[f.name] = dict(value) if isinstance(value, Mapping) else value
        if self.env_vars:
            out["env_vars"] = dict.fromkeys(self.env_vars, "[redacted]")
        return out

    def client(self) -> Any:
        """A synchronous ``daytona.Daytona`` for this backend (import deferred)."""
        try:
            from daytona import Daytona, DaytonaConfig
        except ImportError:
            raise SandboxError(
                "backend 'daytona' needs Daytona's SDK: pip install 'rho-actors[daytona]'"
            ) from None
        api_key = self.api_key or os.environ.get("DAYTONA_API_KEY")
        if not api_key:
            raise SandboxError(
                "backend 'daytona' needs an API key: set DAYTONA_API_KEY "
                "(or DaytonaBackend(api_key=...))"
            )
        return Daytona(
            DaytonaConfig(
                api_key=api_key,
                api_url=self.api_url or os.environ.get("DAYTONA_API_URL"),
                target=self.target or os.environ.get("DAYTONA_TARGET"),
            )
        )


def host_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def _call(fn: Callable[..., _T], *args: Any, what: str) -> _T:
    """One SDK call in a worker thread, its failure as a :class:`SandboxError`.

    A Daytona API that stops answering must not hold a run: the call is
    abandoned (its thread finishes on its own) after ``API_CALL_TIMEOUT``
    seconds or as soon as the caller is cancelled.
    """
    try:
        with trio.move_on_after(API_CALL_TIMEOUT):
            return await trio.to_thread.run_sync(
                lambda: fn(*args), limiter=_CALLS.get(), abandon_on_cancel=True
            )
    except SandboxError:
        raise
    except Exception as exc:
        raise SandboxError(f"{what}: {_describe(exc)}") from exc
    raise SandboxError(f"{what}: no answer from the Daytona API in {API_CALL_TIMEOUT:g} s")


def _describe(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


@attrs.define(eq=False)
class RemoteSandbox:
    """One session's Daytona sandbox and the operations its tools need."""

    backend: DaytonaBackend
    session_id: str
    network: bool = True
    sandbox: Any = None
    _client: Any = None
    _work_dir: str | None = None
    _lock: trio.Lock = attrs.field(factory=trio.Lock)

    @property
    def id(self) -> str | None:
        return None if self.sandbox is None else str(self.sandbox.id)

    async def ensure(self) -> Any:
        """The SDK's sandbox, created (and started) on first use."""
        async with self._lock:
            if self.sandbox is None:
                self._client = await _call(self.backend.client, what="connecting to Daytona")
                params = self._params()
                self.sandbox = await _call(
                    self._client.create, params, what="creating a Daytona sandbox"
                )
                self._work_dir = await _call(
                    self.sandbox.get_work_dir, what=f"sandbox {self.id}: finding its work dir"
                )
                logger.info("session %s: created Daytona sandbox %s", self.session_id, self.id)
            return self.sandbox

    def _params(self) -> Any:
        from daytona import CreateSandboxFromImageParams, CreateSandboxFromSnapshotParams

        backend = self.backend
        labels = {
            **backend.labels,
            LABEL_CREATED_BY: CREATED_BY,
            LABEL_SESSION: self.session_id,
            LABEL_HOST: host_label(),
        }
        common: dict[str, Any] = {
            "labels": labels,
            "env_vars": dict(backend.env_vars) or None,
            "auto_stop_interval": backend.auto_stop_interval,
            "auto_delete_interval": backend.auto_delete_interval,
        }
        if not self.network:
            common["network_block_all"] = True
        if backend.image is not None:
            from daytona import Resources

            resources = None
            if backend.cpu or backend.memory or backend.disk:
                resources = Resources(cpu=backend.cpu, memory=backend.memory, disk=backend.disk)
            return CreateSandboxFromImageParams(image=backend.image, resources=resources, **common)
        return CreateSandboxFromSnapshotParams(snapshot=backend.snapshot, **common)

    async def work_dir(self) -> str:
        await self.ensure()
        assert self._work_dir is not None
        return self._work_dir

    def _where(self) -> str:
        return f"sandbox {self.id}"

    async def resolve(self, path: str, *, confine: bool) -> str:
        """``path`` as an absolute sandbox path; confined, it must stay in the work dir."""
        base = await self.work_dir()
        if "\x00" in path:
            raise SandboxError("path contains a NUL byte")
        full = posixpath.normpath(posixpath.join(base, path))
        if confine and not (full == base or full.startswith(base.rstrip("/") + "/")):
            from ._errors import ToolDenied

            raise ToolDenied(f"path {path!r} is outside the sandbox's working directory {base}")
        return full

    async def run(self, command: str, *, cwd: str, time_limit: float) -> tuple[int | None, str]:
        """Run ``command`` in the sandbox; (exit code or None if timed out, output).

        Cancelling the caller (or the time limit) deletes the Daytona session
        the command runs in, which stops it and everything it started.
        """
        from daytona import SessionExecuteRequest

        sandbox = await self.ensure()
        session = f"rho-{uuid.uuid4().hex[:12]}"
        where = self._where()
        await _call(sandbox.process.create_session, session, what=f"{where}: starting a shell")
        try:
            script = f"cd {_quote(cwd)} && {command}"
            request = SessionExecuteRequest(command=script, run_async=True)
            started = await _call(
                sandbox.process.execute_session_command,
                session,
                request,
                what=f"{where}: running a command",
            )
            command_id = started.cmd_id
            exit_code: int | None = None
            with trio.move_on_after(time_limit):
                while exit_code is None:
                    await trio.sleep(POLL_INTERVAL)
                    state = await _call(
                        sandbox.process.get_session_command,
                        session,
                        command_id,
                        what=f"{where}: checking a command",
                    )
                    exit_code = state.exit_code
            logs = await _call(
                sandbox.process.get_session_command_logs,
                session,
                command_id,
                what=f"{where}: reading a command's output",
            )
            output = getattr(logs, "output", None)
            if output is None:
                output = (getattr(logs, "stdout", "") or "") + (getattr(logs, "stderr", "") or "")
            return exit_code, str(output or "")
        finally:
            # If the sandbox is gone, so is the command: a failure here is fine.
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(10),
                contextlib.suppress(SandboxError),
            ):
                await _call(
                    sandbox.process.delete_session, session, what=f"{where}: stopping a shell"
                )

    async def read_bytes(self, path: str) -> bytes:
        sandbox = await self.ensure()
        data = await _call(sandbox.fs.download_file, path, what=f"{self._where()}: reading {path}")
        return bytes(data or b"")

    async def write_bytes(self, path: str, data: bytes) -> None:
        sandbox = await self.ensure()
        parent = posixpath.dirname(path)
        if parent:
            await self.run(f"mkdir -p {_quote(parent)}", cwd="/", time_limit=60)
        await _call(sandbox.fs.upload_file, data, path, what=f"{self._where()}: writing {path}")

    async def info(self, path: str) -> Any | None:
        """The SDK's file info, or None when nothing is there."""
        sandbox = await self.ensure()
        try:
            return await _call(
                sandbox.fs.get_file_info, path, what=f"{self._where()}: looking at {path}"
            )
        except SandboxError as exc:
            if "not found" in str(exc).lower() or "NotFound" in str(exc):
                return None
            raise

    async def list_dir(self, path: str) -> list[Any]:
        sandbox = await self.ensure()
        return list(
            await _call(sandbox.fs.list_files, path, what=f"{self._where()}: listing {path}")
        )

    async def delete(self) -> None:
        """Delete the sandbox (idempotent); bounded, and safe to call while cancelled."""
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is None or self._client is None:
            return
        with trio.CancelScope(shield=True), trio.move_on_after(60):
            await _call(self._client.delete, sandbox, what=f"sandbox {sandbox.id}: deleting")
            logger.info("session %s: deleted Daytona sandbox %s", self.session_id, sandbox.id)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


async def list_sandboxes(backend: DaytonaBackend) -> list[dict[str, Any]]:
    """Every sandbox rho-actors made in this Daytona account, with its owner."""
    from daytona import ListSandboxesQuery

    client = await _call(backend.client, what="connecting to Daytona")
    query = ListSandboxesQuery(labels={LABEL_CREATED_BY: CREATED_BY})
    found = await _call(lambda: list(client.list(query)), what="listing sandboxes")
    out = []
    for sandbox in found:
        labels = dict(getattr(sandbox, "labels", None) or {})
        out.append(
            {
                "id": str(sandbox.id),
                "state": str(getattr(sandbox, "state", "") or ""),
                "session": labels.get(LABEL_SESSION, ""),
                "host": labels.get(LABEL_HOST, ""),
                "orphaned": _owner_gone(labels.get(LABEL_HOST, "")),
            }
        )
    return out


def _owner_gone(host: str) -> bool:
    """Whether the host process that made a sandbox is gone (only knowable on its host)."""
    name, _, pid = host.rpartition(":")
    if name != socket.gethostname() or not pid.isdigit():
        return False
    return not os.path.exists(f"/proc/{pid}")


async def sweep_sandboxes(backend: DaytonaBackend) -> list[str]:
    """Delete the sandboxes whose owning process (on this host) is gone; their ids."""
    client = await _call(backend.client, what="connecting to Daytona")
    deleted = []
    for entry in await list_sandboxes(backend):
        if not entry["orphaned"]:
            continue
        sandbox = await _call(client.get, entry["id"], what=f"sandbox {entry['id']}: finding")
        await _call(client.delete, sandbox, what=f"sandbox {entry['id']}: deleting")
        deleted.append(entry["id"])
    return deleted
