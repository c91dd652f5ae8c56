"""Storage backends: the blocking half of the Store actor.

A backend's methods are plain blocking functions. The Store actor calls them
from one worker thread at a time (a limiter of 1), so a backend never sees
concurrent calls and needs no locking of its own.

The session-directory backend keeps one folder per session::

    <root>/<session_id>/config.yaml   the agent config (never the API key)
                       /trace.jsonl   append-only records, one JSON object per line
                       /meta.json     a small summary for listing without replay

Appends are written and flushed before the Store acknowledges them, which is
what survives a ``kill -9``: the data is in the kernel's page cache. Pass
``fsync=True`` to also survive a power cut, at the cost of a disk flush per
group commit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import attrs

from .. import _records as r
from .._errors import StoreError
from .._state import parse_trace


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

    def load(self, session_id: str) -> list[r.Envelope]: ...

    def read_meta(self, session_id: str) -> dict[str, Any] | None: ...

    def list(self) -> list[SessionInfo]: ...

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

    def release(self, session_id: str) -> None:
        """Let go of what is cached for a session that went idle (an open trace file)."""
        ...

    def close(self) -> None: ...


def _ts(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    return None


def info_from_meta(meta: Mapping[str, Any]) -> SessionInfo:
    return SessionInfo(
        id=str(meta.get("id", "")),
        status=str(meta.get("status", "unknown")),
        created_at=_ts(meta.get("created_at")) or dt.datetime.fromtimestamp(0, tz=dt.UTC),
        model=str(meta.get("model", "")),
        profile=str(meta.get("profile", "")),
        first_prompt=str(meta.get("first_prompt", "")),
        updated_at=_ts(meta.get("updated_at")),
        run_count=int(meta.get("run_count", 0) or 0),
        total_tokens=int(meta.get("total_tokens", 0) or 0),
        turns=int(meta.get("turns", 0) or 0),
        current_tool=meta.get("current_tool")
        if isinstance(meta.get("current_tool"), str)
        else None,
        pid=meta.get("pid") if isinstance(meta.get("pid"), int) else None,
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


class DirectoryBackend:
    """Session directories of JSONL traces: the embedded default."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.fsync = fsync
        # Open trace files, kept open between group commits.
        self._handles: dict[str, Any] = {}
        # Open trace files are kept (least recently used first out) so a
        # busy session costs no open() per commit; bounded by a share of the
        # process's file-descriptor limit.
        self._max_handles = _handle_budget()

    def _dir(self, session_id: str) -> Path:
        if not session_id or "/" in session_id or session_id.startswith("."):
            raise StoreError(f"invalid session id {session_id!r}", path=str(self.root))
        return self.root / session_id

    def _trace_handle(self, session_id: str) -> Any:
        handle = self._handles.pop(session_id, None)
        if handle is not None:
            self._handles[session_id] = handle  # most recently used goes last
        else:
            if len(self._handles) >= self._max_handles:
                oldest_id = next(iter(self._handles))
                self._handles.pop(oldest_id).close()
            folder = self._dir(session_id)
            path = folder / "trace.jsonl"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                # Unbuffered: each commit is one write() straight to the kernel.
                handle = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open
            except OSError as exc:
                raise _store_error(exc, "open trace", path, session_id) from exc
            self._handles[session_id] = handle
        return handle

    def append(self, batch: Mapping[str, list[bytes]]) -> dict[str, StoreError]:
        failures: dict[str, StoreError] = {}
        for session_id, lines in batch.items():
            try:
                handle = self._trace_handle(session_id)
                data = b"".join(lines)
                try:
                    handle.write(data)
                    if self.fsync:
                        os.fsync(handle.fileno())
                except OSError as exc:
                    self.release(session_id)
                    raise _store_error(
                        exc, "append to trace", self._dir(session_id) / "trace.jsonl", session_id
                    ) from exc
            except StoreError as exc:
                failures[session_id] = exc
        return failures

    def release(self, session_id: str) -> None:
        handle = self._handles.pop(session_id, None)
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def _write_atomic(self, path: Path, data: bytes, session_id: str) -> None:
        tmp = path.with_name(path.name + ".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise _store_error(exc, f"write {path.name}", path, session_id) from exc

    def write_meta(self, session_id: str, meta: Mapping[str, Any]) -> None:
        data = json.dumps(dict(meta), indent=1, ensure_ascii=False).encode()
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

    def exists(self, session_id: str) -> bool:
        folder = self._dir(session_id)
        return (folder / "trace.jsonl").exists() or (folder / "meta.json").exists()

    def load(self, session_id: str) -> list[r.Envelope]:
        path = self._dir(session_id) / "trace.jsonl"
        handle = self._handles.get(session_id)
        if handle is not None:
            handle.flush()
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if (self._dir(session_id) / "meta.json").exists():
                return []
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
        path = self._dir(session_id) / "meta.json"
        try:
            meta = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def list(self) -> list[SessionInfo]:
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise _store_error(exc, "list sessions", self.root, None) from exc
        infos: list[SessionInfo] = []
        for entry in entries:
            if not entry.is_dir() or entry.name.startswith("."):
                continue
            meta = self.read_meta(entry.name)
            if meta is None:
                continue
            meta.setdefault("id", entry.name)
            infos.append(info_from_meta(meta))
        infos.sort(key=lambda info: info.created_at)
        return infos

    def close(self) -> None:
        for session_id in list(self._handles):
            self.release(session_id)
