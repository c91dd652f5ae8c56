"""The Store actor: the single writer of all persistence.

Sessions send it trace records; it gathers whatever has queued up while the
previous write was in progress and commits the lot in one worker-thread call
(group commit), then acknowledges each request. Under load, one disk flush
serves hundreds of sessions; when idle, a lone record is written at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar, assert_never

import attrs
import trio

from .. import _records as r
from .._actor import Mailbox, Reply, ask
from .._errors import StoreError
from ._backend import SessionInfo, StoreBackend

logger = logging.getLogger("rho_actors.store")

# Requests committed together at most; bounds the latency of one commit.
MAX_BATCH = 4096
STORE_MAILBOX_CAPACITY = 1024
# How long a cancelled Store keeps committing the final records of the
# sessions stopping with it (they bound their own final writes at 5 s).
CANCELLED_GRACE = 6.0


class Append:
    """Trace lines for one session. A plain slotted class, not attrs: the
    Store handles tens of thousands of these a second, and a frozen attrs
    ``__init__`` costs several times more."""

    __slots__ = ("lines", "reply", "session_id")

    def __init__(
        self, *, session_id: str, lines: list[bytes], reply: Reply[None] | None = None
    ) -> None:
        self.session_id = session_id
        self.lines = lines
        self.reply = reply


@attrs.frozen(kw_only=True, slots=True)
class WriteMeta:
    session_id: str
    meta: Mapping[str, Any]
    reply: Reply[None] | None = None


@attrs.frozen(kw_only=True, slots=True)
class WriteConfig:
    session_id: str
    config_yaml: str
    reply: Reply[None] | None = None


@attrs.frozen(kw_only=True, slots=True)
class Create:
    """Create a session whole: config, meta and its first trace lines, or nothing."""

    session_id: str
    config_yaml: str
    meta: Mapping[str, Any]
    lines: list[bytes]
    reply: Reply[None]


@attrs.frozen(kw_only=True, slots=True)
class Release:
    """Sessions stopped or hibernated: close what the backend keeps open for them.

    Carries no ids: they wait in the StoreRef's release set, which the actor
    empties, so a release is never lost to a full mailbox.
    """

    reply: None = None


@attrs.frozen(kw_only=True, slots=True)
class Load:
    session_id: str
    reply: Reply[list[r.Envelope]]


@attrs.frozen(kw_only=True, slots=True)
class ReadMeta:
    session_id: str
    reply: Reply[dict[str, Any] | None]


@attrs.frozen(kw_only=True, slots=True)
class ListSessions:
    reply: Reply[list[SessionInfo]]


@attrs.frozen(kw_only=True, slots=True)
class ReadConfig:
    session_id: str
    reply: Reply[str | None]


@attrs.frozen(kw_only=True, slots=True)
class RequestCancel:
    session_id: str
    reason: str
    reply: Reply[None]


@attrs.frozen(kw_only=True, slots=True)
class TakeCancelRequests:
    reply: Reply[dict[str, str]]


@attrs.frozen(kw_only=True, slots=True)
class RecordTelemetry:
    rows: list[Any]
    reply: Reply[None] | None = None


StoreMessage = (
    Append
    | Create
    | WriteMeta
    | WriteConfig
    | Release
    | Load
    | ReadMeta
    | ListSessions
    | ReadConfig
    | RequestCancel
    | TakeCancelRequests
    | RecordTelemetry
)


class TelemetrySink(Protocol):
    """Where telemetry rows go (see ``rho_actors._telemetry.TelemetryDB``)."""

    def write(self, rows: Sequence[Any]) -> None: ...

    def close(self) -> None: ...


class StoreRef:
    """How sessions talk to the Store actor."""

    __slots__ = ("_mailbox", "_releases", "backend", "lock", "telemetry")

    def __init__(
        self,
        mailbox: Mailbox[StoreMessage],
        backend: StoreBackend | None,
        telemetry: TelemetrySink | None = None,
    ) -> None:
        self._mailbox = mailbox
        self.backend = backend
        self.telemetry = telemetry
        # Sessions whose open files can go (see Release); a set, so a
        # session stopping twice costs nothing and nothing is ever dropped.
        self._releases: set[str] = set()
        self.lock: threading.Lock | None = None

    async def create(
        self, session_id: str, config_yaml: str, meta: Mapping[str, Any], lines: list[bytes]
    ) -> None:
        """Create the session's directory (or row) whole, or fail and leave nothing."""
        await ask(
            self._mailbox,
            lambda reply: Create(
                session_id=session_id,
                config_yaml=config_yaml,
                meta=dict(meta),
                lines=lines,
                reply=reply,
            ),
            what="create session",
            session_id=session_id,
        )

    async def append(self, session_id: str, lines: list[bytes]) -> None:
        """Append lines and wait until they are committed."""
        # ask() spelled out: this is the Store's hottest path.
        reply: Reply[None] = Reply()
        message = Append(session_id=session_id, lines=lines, reply=reply)
        await self._mailbox.put(message, what="append trace", session_id=session_id)
        await reply.wait(what="append trace", session_id=session_id)

    async def write_meta(self, session_id: str, meta: Mapping[str, Any]) -> None:
        await ask(
            self._mailbox,
            lambda reply: WriteMeta(session_id=session_id, meta=dict(meta), reply=reply),
            what="write meta",
            session_id=session_id,
        )

    async def write_config(self, session_id: str, config_yaml: str) -> None:
        await ask(
            self._mailbox,
            lambda reply: WriteConfig(session_id=session_id, config_yaml=config_yaml, reply=reply),
            what="write config",
            session_id=session_id,
        )

    async def load(self, session_id: str) -> list[r.Envelope]:
        return await ask(
            self._mailbox,
            lambda reply: Load(session_id=session_id, reply=reply),
            what="load",
            session_id=session_id,
        )

    async def read_meta(self, session_id: str) -> dict[str, Any] | None:
        return await ask(
            self._mailbox,
            lambda reply: ReadMeta(session_id=session_id, reply=reply),
            what="read meta",
            session_id=session_id,
        )

    async def list(self) -> list[SessionInfo]:
        return await ask(
            self._mailbox, lambda reply: ListSessions(reply=reply), what="list sessions"
        )

    async def read_config(self, session_id: str) -> str | None:
        return await ask(
            self._mailbox,
            lambda reply: ReadConfig(session_id=session_id, reply=reply),
            what="read config",
            session_id=session_id,
        )

    async def request_cancel(self, session_id: str, reason: str) -> None:
        await ask(
            self._mailbox,
            lambda reply: RequestCancel(session_id=session_id, reason=reason, reply=reply),
            what="request cancel",
            session_id=session_id,
        )

    async def take_cancel_requests(self) -> dict[str, str]:
        return await ask(
            self._mailbox,
            lambda reply: TakeCancelRequests(reply=reply),
            what="take cancel requests",
        )

    async def record_telemetry(self, rows: Sequence[Any]) -> None:
        """Write telemetry rows (in the same group commit as trace records)."""
        await ask(
            self._mailbox,
            lambda reply: RecordTelemetry(rows=list(rows), reply=reply),
            what="record telemetry",
        )

    def release_nowait(self, session_id: str) -> None:
        """Tell the backend a session stopped or went idle; never blocks, never lost.

        If the mailbox is full the Store is busy, and it empties the release
        set after the batch in hand anyway.
        """
        self._releases.add(session_id)
        self._mailbox.put_nowait(_RELEASE)

    def close(self) -> None:
        self._mailbox.close()


T = TypeVar("T")

_RELEASE = Release()

# One step of a commit: (function to run in the thread, replies to settle).
_Outcome = tuple[Reply[Any] | None, Any, BaseException | None]


_NO_BACKEND = StoreError("this store has no session backend (telemetry only)")


def _apply_batch(
    backend: StoreBackend | None,
    telemetry: TelemetrySink | None,
    batch: list[StoreMessage],
    releases: list[str],
) -> list[_Outcome]:
    """Apply a batch in order, merging runs of appends into one backend call.

    All telemetry rows of the batch are written together, in one transaction.
    """
    results: list[_Outcome] = []
    pending: list[Append] = []
    rows: list[Any] = []
    row_replies: list[Reply[Any] | None] = []

    def flush_appends() -> None:
        if not pending:
            return
        grouped: dict[str, list[bytes]] = {}
        for msg in pending:
            grouped.setdefault(msg.session_id, []).extend(msg.lines)
        try:
            if backend is None:
                raise _NO_BACKEND
            failures = backend.append(grouped)
        except Exception as exc:  # a backend bug must not kill the actor
            failures = {sid: _as_store_error(exc, sid) for sid in grouped}
        for session_id, failure in failures.items():
            logger.warning("store: session %s: the write failed: %s", session_id, failure)
        for msg in pending:
            results.append((msg.reply, None, failures.get(msg.session_id)))
        pending.clear()

    for msg in batch:
        if isinstance(msg, Append):
            pending.append(msg)
            continue
        if isinstance(msg, Release):
            continue  # the ids come with the batch (see serve_store)
        if isinstance(msg, RecordTelemetry):
            rows.extend(msg.rows)
            row_replies.append(msg.reply)
            continue
        flush_appends()
        results.append(_run_one(backend, msg))
    flush_appends()
    if releases and backend is not None:
        for session_id in releases:
            with contextlib.suppress(Exception):
                backend.release(session_id)
    if row_replies:
        error: BaseException | None = None
        try:
            if telemetry is None:
                raise StoreError("this store has no telemetry database")
            telemetry.write(rows)
        except Exception as exc:
            error = _as_store_error(exc, None)
        results.extend((reply, None, error) for reply in row_replies)
    return results


def _as_store_error(exc: Exception, session_id: str | None) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    return StoreError(f"{type(exc).__name__}: {exc}", session_id=session_id)


def _run_one(backend: StoreBackend | None, msg: StoreMessage) -> _Outcome:
    call: Callable[[], Any]
    if backend is None:
        return (msg.reply, None, _NO_BACKEND)
    match msg:
        case Append() | RecordTelemetry():
            raise AssertionError("appends and telemetry are batched")
        case WriteMeta():
            call = lambda: backend.write_meta(msg.session_id, msg.meta)  # noqa: E731
            sid: str | None = msg.session_id
        case WriteConfig():
            call = lambda: backend.write_config(msg.session_id, msg.config_yaml)  # noqa: E731
            sid = msg.session_id
        case Create():
            call = lambda: backend.create(  # noqa: E731
                msg.session_id, msg.config_yaml, msg.meta, msg.lines
            )
            sid = msg.session_id
        case Release():
            raise AssertionError("releases are taken from the release set")
        case Load():
            call = lambda: backend.load(msg.session_id)  # noqa: E731
            sid = msg.session_id
        case ReadMeta():
            call = lambda: backend.read_meta(msg.session_id)  # noqa: E731
            sid = msg.session_id
        case ListSessions():
            call = backend.list
            sid = None
        case ReadConfig():
            call = lambda: backend.read_config(msg.session_id)  # noqa: E731
            sid = msg.session_id
        case RequestCancel():
            call = lambda: backend.request_cancel(msg.session_id, msg.reason)  # noqa: E731
            sid = msg.session_id
        case TakeCancelRequests():
            call = backend.take_cancel_requests
            sid = None
        case _:
            assert_never(msg)
    try:
        return (msg.reply, call(), None)
    except Exception as exc:
        return (msg.reply, None, _as_store_error(exc, sid))


async def serve_store(
    backend: StoreBackend | None,
    telemetry: TelemetrySink | None = None,
    *,
    lock: threading.Lock | None = None,
    task_status: trio.TaskStatus[StoreRef] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the Store actor until its mailbox is closed and drained.

    ``lock`` is held around every batch: the backend's owner (a
    ``SessionStore``) holds it too when a synchronous seed call outside the
    actor uses the same backend, so a backend never sees two callers at once.
    """
    mailbox: Mailbox[StoreMessage] = Mailbox(STORE_MAILBOX_CAPACITY)
    ref = StoreRef(mailbox, backend, telemetry)
    ref.lock = lock
    limiter = trio.CapacityLimiter(1)
    task_status.started(ref)
    try:
        try:
            await _serve(ref, limiter)
        except trio.Cancelled:
            # Cancelled with everything around it: sessions stopping at the
            # same moment still write their final records (in their own
            # bounded, shielded scopes), so keep serving them until the
            # owner closes the mailbox, for a bounded grace.
            with trio.move_on_after(CANCELLED_GRACE, shield=True):
                await _serve(ref, limiter)
            raise
    finally:
        with trio.CancelScope(shield=True):
            await _close(ref, limiter)


async def _serve(ref: StoreRef, limiter: trio.CapacityLimiter) -> None:
    """Commit batches until the mailbox is closed and drained."""
    mailbox, backend, telemetry = ref._mailbox, ref.backend, ref.telemetry
    while True:
        try:
            first = await mailbox.get()
        except trio.EndOfChannel:
            break
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(mailbox.get_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        releases = list(ref._releases)
        ref._releases.clear()
        outcomes = await trio.to_thread.run_sync(
            _locked, ref.lock, _apply_batch, backend, telemetry, batch, releases, limiter=limiter
        )
        for reply, value, error in outcomes:
            if reply is None:
                continue
            if error is not None:
                reply.fail(error)
            else:
                reply.send(value)


async def _close(ref: StoreRef, limiter: trio.CapacityLimiter) -> None:
    mailbox = ref._mailbox
    mailbox.close()
    for msg in mailbox.drain():
        if msg.reply is not None:
            msg.reply.drop()
    for closable in (ref.backend, ref.telemetry):
        if closable is not None:
            await trio.to_thread.run_sync(_locked, ref.lock, closable.close, limiter=limiter)


def _locked(lock: threading.Lock | None, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)`` holding the backend's lock (see ``SessionStore``), if it has one."""
    with lock if lock is not None else contextlib.nullcontext():
        return call(*args)
