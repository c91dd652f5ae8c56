"""The supervisor: OTP supervision (``rho_actors._supervision``) that also hosts sessions.

``open_supervisor()`` is the actor layer's entry point for trio programs::

    async with open_supervisor(store=SessionStore("/tmp/sessions")) as sup:
        session = await sup.start_session(agent)
        result = await session.run(prompt="...")

Children are supervised as in Erlang/OTP (child specs, restart types,
strategies, restart intensity, nesting; see ``rho_actors._supervision``).
On top of that a supervisor hosts sessions: start, stop, wake, hibernate
and recover them.

Every session started here shares one Registry actor, one Store actor
(group commit) and one set of model connection pools. A restarted session
reloads its State from the Store; its mailbox, and the prompts queued in it,
survive the restart. Leaving the block stops the children gracefully
(``shutdown_grace`` seconds each), then cancels whatever is left.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._actor import NoPublicConstructor
from ._agent import Agent
from ._errors import ActorError, RhoError, StoreError, require_trio
from ._gc import tuned_gc
from ._hooks import AgentHooks
from ._messages import Hibernate
from ._registry import DEFAULT_MAX_SUBPROCESSES
from ._run import FINAL_WRITE_TIMEOUT
from ._services import Services, open_services
from ._session import RunHandle, Session
from ._session_store import SessionStore
from ._store._actor import TelemetrySink
from ._supervision import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_PERIOD,
    DEFAULT_SHUTDOWN_GRACE,
    ChildSpec,
    RestartType,
    Strategy,
    Supervision,
    unwrap_supervision_error,
)

logger = logging.getLogger("rho_actors.supervisor")

# Finished runs a supervisor keeps addressable by id (dispatch, run(id)).
REMEMBERED_FINISHED_RUNS = 1000


class _SessionSpec:
    """A hosted session's child spec.

    The same contract as :class:`ChildSpec`, as methods of one small object:
    a ChildSpec of closures costs several hundred bytes per session, which
    is most of what an idle session would otherwise weigh.
    """

    __slots__ = ("id", "session", "supervisor")

    def __init__(self, supervisor: Supervisor, session: Session) -> None:
        self.id = f"session:{session.id}"
        self.session = session
        self.supervisor = supervisor

    @property
    def restart(self) -> RestartType:
        return self.session._restart_type

    @property
    def shutdown(self) -> float | None:
        return self.session._shutdown

    def start(self, *, task_status: trio.TaskStatus[Any]) -> Awaitable[None]:
        # Returns the coroutine itself: no wrapper frame kept for the actor's lifetime.
        return self.session.serve(self.supervisor._services, task_status=task_status)

    def stop(self) -> None:
        self.session._request_stop()

    def on_restart(self) -> Awaitable[None]:
        return self.session._reload_after_crash()

    def on_exit(self, reason: str) -> None:
        self.supervisor._session_ended(self.session, reason)


class Supervisor(Supervision, metaclass=NoPublicConstructor):
    """Owns children (session actors, other supervisors, any task); see :func:`open_supervisor`."""

    def __init__(
        self,
        nursery: trio.Nursery,
        services: Services,
        store: SessionStore | None,
        *,
        strategy: Strategy,
        max_restarts: int,
        period: float,
        hibernate_after: float | None,
        hooks: tuple[AgentHooks, ...] = (),
    ) -> None:
        super().__init__(nursery, strategy=strategy, max_restarts=max_restarts, period=period)
        self._services = services
        self.store = store
        self.hibernate_after = hibernate_after
        # Lifecycle hooks for every run of every session hosted here.
        self.hooks = hooks
        # Runs started with dispatch(): every running one, and the latest
        # finished ones (for lookup and re-attaching by id).
        self._runs: dict[str, RunHandle] = {}
        # Ids of finished runs still in _runs, oldest first: forgetting the
        # oldest is O(1) per finished run, however many are dispatched.
        self._finished: collections.deque[str] = collections.deque()
        # How many finished dispatched runs stay findable (each keeps its
        # session's state in memory until forgotten).
        self.remembered_runs = REMEMBERED_FINISHED_RUNS
        self._closed = trio.Event()
        # Sessions by id: running ones and hibernated ones (an address only).
        self.sessions: dict[str, Session] = {}
        # What the last recover() skipped, each error naming the session,
        # the file and the reason.
        self.recovery_failures: list[Exception] = []

    @property
    def services(self) -> Services:
        return self._services

    # --- sessions --------------------------------------------------------

    async def start_session(
        self,
        agent_or_session: Agent | Session,
        *,
        session_id: str | None = None,
        restart: RestartType = "transient",
        shutdown: float | None = DEFAULT_SHUTDOWN_GRACE,
    ) -> Session:
        """Start a session actor under this supervisor and return the session.

        Pass an ``Agent`` to create a new session (persisted if the
        supervisor has a store), or an existing ``Session`` to host it.
        """
        if isinstance(agent_or_session, Session):
            session = agent_or_session
            if session._ambient and session._supervisor is not self:
                # A standalone session the ambient host still holds (its last
                # run just ended): it leaves the host before it is hosted here.
                await session._leave_ambient_host()
        elif self.store is not None:
            session = self.store.create_session(agent_or_session, session_id=session_id)
        else:
            session = Session(agent_or_session, session_id=session_id)
        if (
            session._store is not None
            and self.store is not None
            and session._store.location != self.store.location
        ):
            raise RhoError(
                "the session belongs to another store than the supervisor's",
                session_id=session.id,
                operation="start_session",
            )
        if session.id in self.sessions:
            raise RhoError("session already started", session_id=session.id)
        session._restart_type = restart
        session._shutdown = shutdown
        self.sessions[session.id] = session
        try:
            await self._start_session_child(session)
        except BaseException:
            self.sessions.pop(session.id, None)
            raise
        return session

    # --- runs --------------------------------------------------------------

    async def dispatch(
        self,
        agent_or_session: Agent | Session,
        prompt: str,
        *,
        session_id: str | None = None,
        keep_session: bool = False,
        **options: Any,
    ) -> RunHandle:
        """Start ``prompt`` on a session under this supervisor; returns its handle at once.

        Given an ``Agent``, a new session is started for the run and stopped
        once the run ends (its history stays in the store), unless
        ``keep_session``. Given a ``Session`` (hosted here or not yet), the
        run is queued on it. ``options`` are those of ``Session.start``.
        """
        if self._closing:
            raise RhoError("the supervisor is shutting down", operation="dispatch")
        if isinstance(agent_or_session, Session):
            session = agent_or_session
            if session.id not in self.sessions:
                session = await self.start_session(session)
            stop_after = False
        else:
            session = await self.start_session(
                agent_or_session, session_id=session_id, restart="transient"
            )
            stop_after = not keep_session
        try:
            handle: RunHandle = await session.start(prompt, **options)
        except BaseException:
            if stop_after:
                session._request_stop()
            raise
        self._runs[handle.id] = handle
        handle.on_finish(lambda h: self._run_finished(h, session if stop_after else None))
        return handle

    def _run_finished(self, handle: RunHandle, stop: Session | None) -> None:
        if stop is not None:
            stop._request_stop()
        self._finished.append(handle.id)
        while len(self._finished) > self.remembered_runs:
            self._runs.pop(self._finished.popleft(), None)

    @property
    def runs(self) -> list[RunHandle]:
        """Runs started with :meth:`dispatch`: all running ones and the latest finished."""
        return list(self._runs.values())

    def run(self, run_id: str) -> RunHandle | None:
        """A run started with :meth:`dispatch`, by id (None once forgotten)."""
        return self._runs.get(run_id)

    # --- lifecycle ------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def aclose(self, grace: float | None = None) -> None:
        """Close gracefully: refuse new sessions and runs, let runs in flight finish
        for ``grace`` seconds (default: each session's shutdown grace), then cancel
        what is left. Every waiting caller and run handle gets its answer. Safe to
        call more than once and from several tasks; returns once closed."""
        if self._closing:
            await self._closed.wait()
            return
        if grace is not None:
            if grace < 0:
                raise ValueError(f"grace must be 0 or more seconds, got {grace:g}")
            for session in self.sessions.values():
                session._shutdown = grace
        limit = (
            grace
            if grace is not None
            else max((s._shutdown or 0.0 for s in self.sessions.values()), default=0.0)
        )
        try:
            # A safety net only: each child's own shutdown policy bounds it,
            # plus the final records a cancelled run still writes.
            with trio.move_on_after(limit + FINAL_WRITE_TIMEOUT + 1, shield=True):
                await self._shutdown()
        finally:
            self._closed.set()

    async def _start_session_child(self, session: Session) -> None:
        session._supervisor = self
        await self._start_child(_SessionSpec(self, session))

    async def _wake(self, session: Session) -> None:
        """Bring a hibernated session back: reload its state and start its actor."""
        if self._closing:
            raise RhoError("the supervisor is shutting down", session_id=session.id)
        await session._reload_after_hibernation()
        await self._start_session_child(session)

    def hibernate_idle(self, older_than: float = 0.0) -> int:
        """Ask every session idle for at least ``older_than`` seconds to hibernate now.

        Returns how many were asked. Each one goes when its actor reads the
        request, unless a message, a waiting caller or an event stream
        arrived first. Needs a store: a hibernated session wakes from it.
        """
        return self._sweep(older_than)[0]

    def _sweep(self, older_than: float) -> tuple[int, float | None]:
        """Ask sessions idle that long to hibernate; also the earliest idle start of the rest."""
        if self.store is None:
            return 0, None
        now = trio.current_time()
        asked = 0
        earliest: float | None = None
        for session in self.sessions.values():
            since = session._idle_since
            mailbox = session._mailbox
            if since is None or mailbox is None:
                continue
            if now - since >= older_than:
                asked += mailbox.put_nowait(_HIBERNATE)
            elif earliest is None or since < earliest:
                earliest = since
        return asked, earliest

    def _session_ended(self, session: Session, reason: str) -> None:
        """Called when a session actor stops (for good, to hibernate, or released idle)."""
        if session._hibernating:
            return
        self.sessions.pop(session.id, None)
        if session._released:
            session._forget_host()
        else:
            session._actor_ended(reason)

    async def resume_session(self, session_id: str, agent: Agent) -> Session:
        """Reload a stored session and start it here."""
        if self.store is None:
            raise RhoError("this supervisor has no store", operation="resume_session")
        session = await self.store.aresume(session_id, agent)
        return await self.start_session(session)

    async def stop_session(self, session: Session) -> None:
        """Stop a session after its current message (by its shutdown policy)."""
        await self.terminate_child(f"session:{session.id}")
        self.sessions.pop(session.id, None)

    async def recover(self, agent_factory: Callable[[str], Agent] | None = None) -> list[Session]:
        """Bring back every session the store shows as interrupted, under this supervisor.

        ``agent_factory(session_id)`` builds each session's agent; by default
        it is rebuilt from the session's stored ``config.yaml``. Resume each
        interrupted run with ``await session.resume()``.
        """
        if self.store is None:
            raise RhoError("this supervisor has no store", operation="recover")
        store = self.store
        recovered: list[Session] = []
        self.recovery_failures = []
        for info in await store.alist():
            if info.status == "corrupt" and info.error is not None:
                self._recovery_failed(StoreError(info.error, session_id=info.id))
                continue
            if info.status != "interrupted" or info.id in self.sessions:
                continue
            try:
                agent = (
                    agent_factory(info.id)
                    if agent_factory is not None
                    else await store.aagent_for(info.id)
                )
                session = await store.aresume(info.id, agent)
                recovered.append(await self.start_session(session))
                logger.info("recover: session %s is back (interrupted mid-run)", info.id)
            except (RhoError, ValueError) as exc:
                # One bad session is reported and skipped; the rest come back.
                self._recovery_failed(exc)
        return recovered

    def _recovery_failed(self, error: Exception) -> None:
        self.recovery_failures.append(error)
        logger.warning("recover: skipped a session: %s", error)

    # --- nesting ----------------------------------------------------------

    async def start_supervisor(
        self,
        child_id: str,
        *,
        strategy: Strategy = "one_for_one",
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        period: float = DEFAULT_PERIOD,
        restart: RestartType = "permanent",
    ) -> Supervisor:
        """A child supervisor sharing this one's services; its escalation is a child failure."""

        async def start(*, task_status: trio.TaskStatus[Supervisor]) -> None:
            async with trio.open_nursery() as nursery:
                child = Supervisor._create(
                    nursery,
                    self._services,
                    self.store,
                    strategy=strategy,
                    max_restarts=max_restarts,
                    period=period,
                    hibernate_after=self.hibernate_after,
                )
                task_status.started(child)
                await trio.sleep_forever()

        child: Supervisor = await self.start_child(
            ChildSpec(id=child_id, start=start, restart=restart)
        )
        child.hooks = self.hooks
        return child


@asynccontextmanager
async def open_supervisor(
    *,
    store: SessionStore | None = None,
    strategy: Strategy = "one_for_one",
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    period: float = DEFAULT_PERIOD,
    hibernate_after: float | None = None,
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
    telemetry: TelemetrySink | None = None,
    max_subprocesses: int = DEFAULT_MAX_SUBPROCESSES,
    hooks: Sequence[AgentHooks] = (),
    _shared: Services | None = None,
) -> AsyncIterator[Supervisor]:
    """Open a supervisor; children started on it live until the block ends.

    ``hibernate_after`` (seconds): a session idle that long stops its actor
    and frees its memory, keeping only its address; its next message wakes
    it from the store. ``max_subprocesses`` is the global limit on tool
    subprocesses (bash, rg) running at once. ``shutdown_grace`` is the
    default graceful wait when the block ends. While supervisors are open,
    the garbage collector is tuned for many long-lived objects (see
    ``rho_actors._gc``). ``hooks`` (:class:`AgentHooks`) watch every run of
    every session hosted here, after each agent's own hooks.

    To keep a supervisor open across an application's start-up and
    shut-down hooks instead of one block, see :func:`serve_supervisor`.
    """
    require_trio("open_supervisor()")
    backend = store.backend if store is not None else None
    try:
        with tuned_gc():
            async with (
                open_services(
                    backend,
                    telemetry,
                    max_subprocesses=max_subprocesses,
                    shared=_shared,
                    lock=store.lock if store is not None else None,
                ) as services,
                trio.open_nursery() as nursery,
            ):
                # While it runs, the store's async calls go through its Store actor.
                if store is not None and services.store is not None:
                    store._attach(services.store)
                supervisor = Supervisor._create(
                    nursery,
                    services,
                    store,
                    strategy=strategy,
                    max_restarts=max_restarts,
                    period=period,
                    hibernate_after=hibernate_after,
                    hooks=tuple(hooks),
                )
                background = [trio.CancelScope(), trio.CancelScope()]
                if store is not None:
                    nursery.start_soon(_watch_cancel_requests, supervisor, background[0])
                    if hibernate_after is not None:
                        nursery.start_soon(_sweep_idle, supervisor, hibernate_after, background[1])
                try:
                    yield supervisor
                    with trio.move_on_after(shutdown_grace + 1):
                        await supervisor._shutdown()
                finally:
                    supervisor._closed.set()
                    if store is not None and services.store is not None:
                        store._detach(services.store)
                    for scope in background:
                        scope.cancel(reason="supervisor closing")
                    nursery.cancel_scope.cancel(reason="supervisor closed")
    except BaseExceptionGroup as group:
        escalated = unwrap_supervision_error(group)
        if escalated is not None:
            raise escalated from None
        raise


async def serve_supervisor(
    *,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """A supervisor as a task: ``sup = await nursery.start(serve_supervisor, ...)``.

    For applications whose start-up and shut-down are separate hooks (a web
    server's lifespan): the supervisor lives until ``await sup.aclose()``
    (graceful) or until the nursery is cancelled (runs in flight are
    cancelled, each still answering its caller). ``options`` are those of
    :func:`open_supervisor`; pass them as keywords through
    ``functools.partial`` (``nursery.start`` passes positional arguments only).
    """
    async with open_supervisor(**options) as supervisor:
        task_status.started(supervisor)
        await supervisor._closed.wait()


_HIBERNATE = Hibernate()
# The idle sweep runs at most this many times per ``hibernate_after``: a
# session hibernates between hibernate_after and hibernate_after * (1 + 1/16)
# seconds after it went idle, and sweeping 10,000 sessions stays rare.
SWEEPS_PER_PERIOD = 16
MIN_SWEEP_GAP = 0.01


async def _sweep_idle(
    supervisor: Supervisor, hibernate_after: float, scope: trio.CancelScope
) -> None:
    """Hibernate sessions idle for ``hibernate_after`` seconds.

    One task per supervisor instead of a timer per session: a per-session
    cancel scope with a deadline weighs more than the rest of an idle
    session's bookkeeping together.
    """
    gap = max(hibernate_after / SWEEPS_PER_PERIOD, MIN_SWEEP_GAP)
    with scope:
        while True:
            now = trio.current_time()
            _, earliest = supervisor._sweep(hibernate_after)
            due = now + hibernate_after if earliest is None else earliest + hibernate_after
            await trio.sleep_until(max(due, now + gap))


# How often a supervisor with a store looks for cancel requests made by other
# processes (``rho-actors monitor --cancel``, a queued run's cancel): a
# directory scan or one small query, cheap enough ten times a second.
CANCEL_POLL_INTERVAL = 0.1


async def _watch_cancel_requests(supervisor: Supervisor, scope: trio.CancelScope) -> None:
    store = supervisor.store
    assert store is not None
    with scope:
        while True:
            await store.wait_for_control(CANCEL_POLL_INTERVAL)
            if not supervisor.sessions:
                continue
            ref = supervisor.services.store
            if ref is None:
                return
            try:
                requests = await ref.take_cancel_requests()
            except (StoreError, ActorError) as exc:
                logger.warning("cannot read cancel requests: %s", exc)
                continue
            for session_id, reason in requests.items():
                session = supervisor.sessions.get(session_id)
                if session is not None and session.running:
                    await session.cancel(reason)
            await _apply_control_requests(supervisor, store)


async def _apply_control_requests(supervisor: Supervisor, store: SessionStore) -> None:
    """Approval decisions and reconfigurations other processes sent to our sessions."""
    try:
        requests = await trio.to_thread.run_sync(
            store.take_control_requests, list(supervisor.sessions)
        )
    except StoreError as exc:
        logger.warning("cannot read control requests: %s", exc)
        return
    for session_id, kind, payload in requests:
        session = supervisor.sessions.get(session_id)
        if session is None:
            continue
        try:
            await apply_control(session, kind, payload)
        except (RhoError, TypeError, KeyError) as exc:
            logger.warning("session %s: cannot apply a %s request: %s", session_id, kind, exc)


async def apply_control(session: Session, kind: str, payload: Any) -> None:
    """Apply one control request another process sent (``approve`` or
    ``reconfigure``, see ``SessionStore.arequest_approval``/``arequest_reconfigure``)."""
    if kind == "approve":
        if payload.get("approved"):
            await session.approve(payload["tool_call_id"])
        else:
            await session.deny(payload["tool_call_id"], payload.get("reason") or "denied")
    elif kind == "reconfigure":
        await session.reconfigure(**payload)
