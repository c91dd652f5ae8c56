"""Storage backends: the blocking half of the Store actor.

A backend's methods are plain blocking functions. The Store actor calls them
from one worker thread at a time (a limiter of 1), so a backend never sees
concurrent calls and needs no locking of its own.

The session-directory backend keeps one folder per session::

    <root>/<session_id>/config.yaml   the agent config (never the API key)
                       /trace.jsonl   append-only records, one JSON object per line
                       /meta.json     a small summary for listing without replay

Appends are written before the Store acknowledges them, which is what
survives a ``kill -9``: the data is in the kernel's page cache. Pass
``fsync=True`` to also survive a power cut, at the cost of a disk flush per
group commit.

The trace protocol is complete-or-absent:

* An append is written whole or not at all: short writes are continued, and
  a write that fails part way (a full disk) is cut off again with
  ``ftruncate`` before the failure is reported, so nothing half-written is
  ever followed by another record.
* A torn tail (the process died mid-write) is fenced when the trace is next
  opened for appending: the partial line, never acknowledged, is truncated.
* A session directory appears complete or not at all: it is built under a
  hidden name (config, meta, and a trace opening with ``session_start``) and
  renamed into place.
* ``meta.json`` is a cache of what the trace says, stamped with the trace's
  size when written. A missing, unreadable or stale meta is rebuilt from the
  trace, so a session never vanishes from a listing, and whether a session
  was interrupted is read from the trace (a run start without a run end).
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import errno
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs

from .. import _records as r
from .._errors import StoreError
from .._state import State, parse_trace


@attrs.frozen(kw_only=True, slots=True)
class SessionInfo:
    """A stored session as listed, without replaying its trace."""

    id: str
    status: str
    created_at: dt.datetime
    model: str
    profile: str
    first_prompt: str
    updated_at: dt.datetime | None = None
    run_count: int = 0
    total_tokens: int = 0
    turns: int = 0
    current_tool: str | None = None
    pid: int | None = None
    # Set (with status "corrupt") when the session cannot be read: the file
    # and the reason. Listed so one bad session is visible, never fatal.
    error: str | None = None


class StoreBackend(Protocol):
    """Blocking persistence operations, called from the Store actor's worker thread."""

    def append(self, batch: Mapping[str, list[bytes]]) -> dict[str, StoreError]:
        """Append encoded trace lines, grouped by session, durably enough to ack.

        Returns the sessions whose append failed: one session's full disk or
        bad permissions must not fail the others in the same group commit.
        """
        ...

    def write_meta(self, session_id: str, meta: Mapping[str, Any]) -> None: ...

    def write_config(self, session_id: str, config_yaml: str) -> None: ...

    def create(
        self, session_id: str, config_yaml: str, meta: Mapping[str, Any], lines: list[bytes]
    ) -> None:
        """Create a session whole (config, meta, first trace lines) or not at all."""
        ...

    def load(self, session_id: str) -> list[r.Envelope]: ...

    def read_meta(self, session_id: str) -> dict[str, Any] | None: ...

    def list(self) -> list[SessionInfo]:
        """Every session; one that cannot be read is listed with status ``corrupt``."""
        ...

    def exists(self, session_id: str) -> bool: ...

    def read_config(self, session_id: str) -> str | None:
        """The session's config.yaml text, if stored."""
        ...

    def request_cancel(self, session_id: str, reason: str) -> None:
        """Ask whichever process runs the session to cancel its run."""
        ...

    def take_cancel_requests(self) -> dict[str, str]:
        """Cancel requests made since the last call (session id to reason)."""
        ...

    def request_control(self, session_id: str, kind: str, payload: str) -> None:
        """Send the process running the session an approval decision or a
        reconfiguration (``kind``, and its JSON ``payload``)."""
        ...

    def take_control_requests(
        self, session_ids: Iterable[str]
    ) -> builtins.list[tuple[str, str, str]]:
        """The control requests for these sessions, oldest first; taken only once."""
        ...

    def release(self, session_id: str) -> None:
        """Let go of what is cached for a session that went idle (an open trace file)."""
        ...

    def close(self) -> None: ...


def _ts(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return None


def info_from_meta(meta: r.SessionMeta, status: str | None = None) -> SessionInfo:
    return SessionInfo(
        id=meta.id,
        status=status or meta.status,
        created_at=_ts(meta.created_at) or dt.datetime.fromtimestamp(0, tz=dt.UTC),
        model=meta.model,
        profile=meta.profile,
        first_prompt=meta.first_prompt,
        updated_at=_ts(meta.updated_at) if meta.updated_at else None,
        run_count=meta.run_count,
        total_tokens=meta.total_tokens,
        turns=meta.turns,
        current_tool=meta.current_tool,
        pid=meta.pid,
    )


def _handle_budget() -> int:
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 4))


def _store_error(exc: OSError, what: str, path: Path, session_id: str | None) -> StoreError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "disk full"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        reason = "permission denied"
    return StoreError(f"cannot {what} ({reason})", path=str(path), session_id=session_id)


# What a control request may ask of the process running a session.
CONTROL_KINDS = ("approve", "reconfigure")

# How old a half-built session directory must be before a listing removes
# it: its creator died between building it and renaming it into place.
STALE_CREATION_SECONDS = 600.0
_CREATING = ".creating-"
_TAIL_CHUNK = 65536

# ``os.write``'s shape: what the backend writes trace bytes with. The seam
# for fault injection (see ``rho_actors.testing.DiskFaults``).
Writer = Callable[[int, memoryview], int]


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class _Trace:
    """An open trace file and its committed size (where a failed append is cut back to)."""

    __slots__ = ("fd", "size")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size


class DirectoryBackend:
    """Session directories of JSONL traces: the embedded default.

    ``write`` is the function trace bytes are written with (``os.write``'s
    shape: a file descriptor and bytes in, a count out). Tests pass a faulty
    one to inject full disks and short writes; see
    :class:`rho_actors.testing.DiskFaults`.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = False, write: Writer = os.write
    ) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._write = write
        # Open trace files, kept open between group commits (least recently
        # used first out) so a busy session costs no open() per commit;
        # bounded by a share of the process's file-descriptor limit.
        self._handles: dict[str, _Trace] = {}
        self._max_handles = _handle_budget()

    def _dir(self, session_id: str) -> Path:
        if not session_id or "/" in session_id or session_id.startswith("."):
            raise StoreError(f"invalid session id {session_id!r}", path=str(self.root))
        return self.root / session_id

    def _trace_path(self, session_id: str) -> Path:
        return self._dir(session_id) / "trace.jsonl"

    # --- appends ------------------------------------------------------------

    def _trace(self, session_id: str) -> _Trace:
        trace = self._handles.pop(session_id, None)
        if trace is not None:
            self._handles[session_id] = trace  # most recently used goes last
            return trace
        if len(self._handles) >= self._max_handles:
            self.release(next(iter(self._handles)))
        path = self._trace_path(session_id)
        if not path.parent.is_dir():
            raise StoreError("no such session", path=str(path.parent), session_id=session_id)
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _store_error(exc, "open trace", path, session_id) from exc
        try:
            size = _fence_torn_tail(fd)
        except OSError as exc:
            os.close(fd)
            raise _store_error(exc, "repair the trace's torn tail", path, session_id) from exc
        trace = self._handles[session_id] = _Trace(fd, size)
        return trace

    def append(self, batch: Mapping[str, list[bytes]]) -> dict[str, StoreError]:
        failures: dict[str, StoreError] = {}
        for session_id, lines in batch.items():
            try:
                self._append(session_id, b"".join(lines))
            except StoreError as exc:
                failures[session_id] = exc
        return failures

    def _append(self, session_id: str, data: bytes) -> None:
        trace = self._trace(session_id)
        start = trace.size
        try:
            done = self._write_all(trace.fd, data)
            if self.fsync:
                os.fsync(trace.fd)
        except OSError as exc:
            # Complete or absent: cut the partial record off before reporting.
            try:
                os.ftruncate(trace.fd, start)
            except OSError:
                # Cannot cut it now: drop the handle, and the next open
                # fences the torn tail before anything is appended.
                self.release(session_id)
            raise _store_error(
                exc, "append to trace", self._trace_path(session_id), session_id
            ) from exc
        trace.size = start + done

    def release(self, session_id: str) -> None:
        trace = self._handles.pop(session_id, None)
        if trace is not None:
            with contextlib.suppress(OSError):
                os.close(trace.fd)

    def _trace_size(self, session_id: str) -> int | None:
        trace = self._handles.get(session_id)
        if trace is not None:
            return trace.size
        try:
            return self._trace_path(session_id).stat().st_size
        except FileNotFoundError:
            return None

    # --- whole files ----------------------------------------------------------

    def _write_file(self, path: Path, data: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            self._write_all(fd, data)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _write_all(self, fd: int, data: bytes) -> int:
        """Write everything, continuing after short writes; returns the count."""
        view = memoryview(data)
        done = 0
        while done < len(view):
            written = self._write(fd, view[done:])
            if written <= 0:
                raise OSError(errno.EIO, "the write made no progress")
            done += written
        return done

    def _write_atomic(self, path: Path, data: bytes, session_id: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._write_file(tmp, data)
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _store_error(exc, f"write {path.name}", path, session_id) from exc

    def create(
        self, session_id: str, config_yaml: str, meta: Mapping[str, Any], lines: list[bytes]
    ) -> None:
        final = self._dir(session_id)
        if final.exists():
            raise StoreError("session already exists", path=str(final), session_id=session_id)
        building = self.root / f"{_CREATING}{session_id}-{uuid.uuid4().hex[:8]}"
        trace = b"".join(lines)
        try:
            building.mkdir(parents=True)
            self._write_file(building / "config.yaml", config_yaml.encode())
            self._write_file(building / "trace.jsonl", trace)
            self._write_file(building / "meta.json", _meta_bytes(meta, len(trace)))
            os.rename(building, final)
            if self.fsync:
                _fsync_dir(self.root)
        except OSError as exc:
            shutil.rmtree(building, ignore_errors=True)
            raise _store_error(exc, "create session", final, session_id) from exc

    def write_meta(self, session_id: str, meta: Mapping[str, Any]) -> None:
        data = _meta_bytes(meta, self._trace_size(session_id))
        self._write_atomic(self._dir(session_id) / "meta.json", data, session_id)

    def write_config(self, session_id: str, config_yaml: str) -> None:
        self._write_atomic(self._dir(session_id) / "config.yaml", config_yaml.encode(), session_id)

    def read_config(self, session_id: str) -> str | None:
        try:
            return (self._dir(session_id) / "config.yaml").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _store_error(exc, "read config", self._dir(session_id), session_id) from exc

    # Cancel requests from other processes live in one folder, so a
    # supervisor polls a single directory however many sessions it hosts.
    def _control_dir(self) -> Path:
        return self.root / ".control"

    def request_cancel(self, session_id: str, reason: str) -> None:
        self._dir(session_id)  # validates the id
        folder = self._control_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _store_error(exc, "request cancel", folder, session_id) from exc
        self._write_atomic(folder / f"{session_id}.cancel", reason.encode(), session_id)

    def take_cancel_requests(self) -> dict[str, str]:
        requests: dict[str, str] = {}
        try:
            entries = list(os.scandir(self._control_dir()))
        except FileNotFoundError:
            return requests
        for entry in entries:
            if not entry.name.endswith(".cancel"):
                continue
            try:
                reason = Path(entry.path).read_text(encoding="utf-8")
                os.unlink(entry.path)
            except OSError:
                continue
            requests[entry.name.removesuffix(".cancel")] = (
                reason or "cancelled from another process"
            )
        return requests

    def request_control(self, session_id: str, kind: str, payload: str) -> None:
        self._dir(session_id)  # validates the id
        folder = self._control_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _store_error(exc, "send a control request", folder, session_id) from exc
        name = f"{session_id}.{time.time_ns():020d}.{uuid.uuid4().hex[:6]}.{kind}"
        self._write_atomic(folder / name, payload.encode(), session_id)

    def take_control_requests(self, session_ids: Iterable[str]) -> list[tuple[str, str, str]]:
        wanted = set(session_ids)
        try:
            names = sorted(os.listdir(self._control_dir()))
        except FileNotFoundError:
            return []
        taken: list[tuple[str, str, str]] = []
        for name in names:
            parts = name.split(".")
            if len(parts) != 4 or parts[0] not in wanted or parts[3] not in CONTROL_KINDS:
                continue
            path = self._control_dir() / name
            try:
                payload = path.read_text(encoding="utf-8")
                os.unlink(path)
            except OSError:
                continue  # another process took it
            taken.append((parts[0], parts[3], payload))
        return taken

    # --- reading ----------------------------------------------------------------

    def exists(self, session_id: str) -> bool:
        return self._dir(session_id).is_dir()

    def load(self, session_id: str) -> list[r.Envelope]:
        path = self._trace_path(session_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(
                "no such session", path=str(self._dir(session_id)), session_id=session_id
            ) from None
        except OSError as exc:
            raise _store_error(exc, "read trace", path, session_id) from exc
        try:
            return parse_trace(data, where=str(path))
        except StoreError as exc:
            raise StoreError(exc.message, session_id=session_id, operation="load") from exc

    def read_meta(self, session_id: str) -> dict[str, Any] | None:
        """The cached meta, or None if it is missing or unreadable (see :meth:`info`)."""
        path = self._dir(session_id) / "meta.json"
        try:
            meta = json.loads(path.read_bytes())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def info(self, session_id: str) -> SessionInfo:
        """How the session stands, from its meta when that is current, else its trace.

        Raises :class:`StoreError` (naming the file) if neither can be read.
        """
        size = self._trace_size(session_id)
        if size is None:
            raise StoreError(
                "incomplete session directory (no trace.jsonl)",
                path=str(self._dir(session_id)),
                session_id=session_id,
            )
        return current_info(session_id, self.read_meta(session_id), size, self.load)

    def rebuild_meta(self, session_id: str, cached: r.SessionMeta | None) -> r.SessionMeta:
        """Meta derived from the trace (what a missing or stale meta.json should say)."""
        return meta_from_trace(session_id, self.load(session_id), cached)

    def list(self) -> list[SessionInfo]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _store_error(exc, "list sessions", self.root, None) from exc
        infos: list[SessionInfo] = []
        for entry in entries:
            if entry.name.startswith(_CREATING):
                _remove_if_stale(Path(entry.path))
                continue
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                infos.append(self.info(entry.name))
            except StoreError as exc:
                infos.append(corrupt_info(entry.name, exc))
        infos.sort(key=lambda info: info.created_at)
        return infos

    def close(self) -> None:
        for session_id in list(self._handles):
            self.release(session_id)


def current_info(
    session_id: str,
    raw_meta: dict[str, Any] | None,
    trace_size: int,
    load: Callable[[str], list[r.Envelope]],
) -> SessionInfo:
    """A session's listing from its cached meta when the meta is current (stamped
    with the trace's present size), else from its trace; ``load`` reads the trace.

    Shared by every backend: what "current" and "interrupted" mean must not
    depend on where the trace is kept.
    """
    meta = r.decode_meta(raw_meta)
    if meta is not None and meta.trace_size == trace_size:
        status = meta.status
    elif meta is not None and meta.status == "running" and _live_pid(meta.pid):
        # A live process is writing this trace right now: nothing to rebuild.
        status = "running"
    else:
        meta = meta_from_trace(session_id, load(session_id), meta)
        status = meta.status
    if status == "running" and not _live_pid(meta.pid):
        status = "interrupted"  # a run start without a run end, and nobody running it
    return info_from_meta(meta, status)


def meta_from_trace(
    session_id: str, envelopes: list[r.Envelope], cached: r.SessionMeta | None
) -> r.SessionMeta:
    """Meta derived from a trace (what a missing or stale cached meta should say)."""
    state = State.replay(envelopes, session_id)
    meta = cached if cached is not None else r.SessionMeta(id=session_id)
    meta.id = session_id
    for envelope in envelopes:
        record = envelope.record
        if isinstance(record, r.SessionStarted):
            meta.created_at = meta.created_at or record.created_at
            meta.model = meta.model or record.model
            meta.profile = meta.profile or record.profile
        elif isinstance(record, r.RunStarted) and not meta.first_prompt:
            meta.first_prompt = record.prompt[:500]
    meta.status = state.status
    meta.run_count = state.run_count
    meta.total_tokens = int(state.usage.get("total_tokens", 0))
    if envelopes:
        meta.updated_at = envelopes[-1].ts
    if state.status != "running":
        meta.current_tool = None
    return meta


def meta_json(meta: Mapping[str, Any], trace_size: int | None) -> bytes:
    """The cached meta as stored: stamped with the trace size it describes."""
    return _meta_bytes(meta, trace_size)


def _meta_bytes(meta: Mapping[str, Any], trace_size: int | None) -> bytes:
    stamped = {**meta, "trace_size": trace_size}
    return json.dumps(stamped, indent=1, ensure_ascii=False).encode()


def _live_pid(pid: int | None) -> bool:
    return pid is not None and pid_alive(pid)


def corrupt_info(session_id: str, exc: StoreError) -> SessionInfo:
    return SessionInfo(
        id=session_id,
        status="corrupt",
        created_at=dt.datetime.fromtimestamp(0, tz=dt.UTC),
        model="",
        profile="",
        first_prompt="",
        error=str(exc),
    )


def _fence_torn_tail(fd: int) -> int:
    """Truncate a partial last line (never acknowledged); returns the trace's size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            keep = start + newline + 1
            os.ftruncate(fd, keep)
            return keep
        end = start
    os.ftruncate(fd, 0)
    return 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_if_stale(path: Path) -> None:
    with contextlib.suppress(OSError):
        if time.time() - path.stat().st_mtime > STALE_CREATION_SECONDS:
            shutil.rmtree(path, ignore_errors=True)
