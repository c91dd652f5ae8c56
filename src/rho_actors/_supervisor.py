"""Supervision: children as data, restarts by strategy, escalation when it is hopeless.

``open_supervisor()`` is the actor layer's entry point for trio programs::

    async with open_supervisor(store=SessionStore("/tmp/sessions")) as sup:
        session = await sup.start_session(agent)
        result = await session.run(prompt="...")

Modelled on Erlang/OTP:

* A child is described by a :class:`ChildSpec`: how to start it (an async
  function that reports readiness through ``task_status``), its restart
  type and its shutdown policy.
* ``permanent`` children are always restarted, ``transient`` ones only
  after a failure, ``temporary`` ones never.
* The strategy says who restarts with a failed child: only itself
  (``one_for_one``), every child (``one_for_all``), or itself and every
  child started after it (``rest_for_one``).
* More than ``max_restarts`` restarts within ``period`` seconds means
  restarting does not help: the supervisor gives up and raises
  :class:`SupervisionError` (carrying the last failure) to the enclosing
  nursery. Failures are never swallowed.
* Supervisors nest: :meth:`Supervisor.start_supervisor` runs a child
  supervisor whose escalation is a failure of that child.

Every session started here shares one Registry actor, one Store actor
(group commit) and one set of model connection pools. A restarted session
reloads its State from the Store; its mailbox, and the prompts queued in it,
survive the restart. Leaving the block stops the children gracefully
(``shutdown_grace`` seconds each), then cancels whatever is left.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, Protocol

import attrs
import trio

from ._actor import NoPublicConstructor
from ._agent import Agent
from ._errors import ActorError, RhoError, StoreError, SupervisionError, single_exception
from ._gc import tuned_gc
from ._messages import Hibernate
from ._registry import DEFAULT_MAX_SUBPROCESSES
from ._services import Services, open_services
from ._session import Session
from ._session_store import SessionStore
from ._store._actor import TelemetrySink

RestartType = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]

DEFAULT_SHUTDOWN_GRACE = 5.0
DEFAULT_MAX_RESTARTS = 3
DEFAULT_PERIOD = 5.0

StartFn = Callable[..., Awaitable[Any]]

logger = logging.getLogger("rho_actors.supervisor")


@attrs.frozen(kw_only=True, slots=True)
class ChildSpec:
    """How to run one child.

    ``start(task_status=...)`` runs the child and calls
    ``task_status.started(value)`` once it is ready; ``value`` is what
    :meth:`Supervisor.start_child` returns. ``shutdown`` is the graceful
    wait in seconds after ``stop()`` is called (None: cancel at once).
    ``on_restart`` runs before each restart (a session reloads its state);
    ``on_exit(reason)`` when the child is gone for good.
    """

    id: str
    start: StartFn
    restart: RestartType = "permanent"
    shutdown: float | None = DEFAULT_SHUTDOWN_GRACE
    stop: Callable[[], None] | None = None
    on_restart: Callable[[], Awaitable[None]] | None = None
    on_exit: Callable[[str], None] | None = None


class _Spec(Protocol):
    """What the supervisor reads from a child spec (:class:`ChildSpec` or a session's)."""

    @property
    def id(self) -> str: ...
    @property
    def start(self) -> StartFn: ...
    @property
    def restart(self) -> RestartType: ...
    @property
    def shutdown(self) -> float | None: ...
    @property
    def stop(self) -> Callable[[], None] | None: ...
    @property
    def on_restart(self) -> Callable[[], Awaitable[None]] | None: ...
    @property
    def on_exit(self) -> Callable[[str], None] | None: ...


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


class _ReadyReporter:
    """A task_status for a child's first start that remembers whether it reported ready.

    It lets go of trio's task status once used: that object keeps the
    temporary nursery of ``nursery.start`` (a cancel scope and its sets)
    alive for as long as anything refers to it, i.e. the child's lifetime.
    """

    __slots__ = ("_inner", "reported")

    def __init__(self, inner: trio.TaskStatus[Any]) -> None:
        self._inner: trio.TaskStatus[Any] | None = inner
        self.reported = False

    def started(self, value: Any = None) -> None:
        inner, self._inner = self._inner, None
        if inner is None:
            raise RuntimeError("called 'started' twice on the same task status")
        self.reported = True
        inner.started(value)


class _Child:
    __slots__ = (
        "_done",
        "finished",
        "restart_failure",
        "restart_requested",
        "scope",
        "spec",
        "stopping",
    )

    def __init__(self, spec: _Spec) -> None:
        self.spec = spec
        self.scope: trio.CancelScope | None = None
        self.restart_requested = False
        self.restart_failure = ""
        self.stopping = False
        self.finished = False
        # Made only when someone waits for the child to end (a shutdown).
        self._done: trio.Event | None = None

    def set_finished(self) -> None:
        self.finished = True
        if self._done is not None:
            self._done.set()

    async def wait_finished(self) -> None:
        if self.finished:
            await trio.lowlevel.checkpoint()
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()


class Supervisor(metaclass=NoPublicConstructor):
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
    ) -> None:
        self._nursery = nursery
        self._services = services
        self.store = store
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period = period
        self.hibernate_after = hibernate_after
        self._children: dict[str, _Child] = {}
        # Sessions by id: running ones and hibernated ones (an address only).
        self.sessions: dict[str, Session] = {}
        self._restarts: collections.deque[float] = collections.deque()
        self.last_failure: BaseException | None = None
        self.restart_count = 0
        self._closing = False
        # What the last recover() skipped, each error naming the session,
        # the file and the reason.
        self.recovery_failures: list[Exception] = []

    @property
    def services(self) -> Services:
        return self._services

    @property
    def children(self) -> list[str]:
        """Ids of the running children, in start order."""
        return list(self._children)

    # --- generic children ------------------------------------------------

    async def start_child(self, spec: ChildSpec) -> Any:
        """Start a child and wait until it reports ready; returns what it reported."""
        return await self._start_child(spec)

    async def _start_child(self, spec: _Spec) -> Any:
        if self._closing:
            raise RhoError("the supervisor is shutting down", operation=f"start {spec.id}")
        if spec.id in self._children:
            raise RhoError(f"a child with id {spec.id!r} is already running")
        child = _Child(spec)
        self._children[spec.id] = child
        try:
            # The spec's id as the task name: trio would otherwise build a
            # new name string for every child.
            return await self._nursery.start(self._run_child, child, name=spec.id)
        except BaseException:
            self._children.pop(spec.id, None)
            raise

    async def _run_child(self, child: _Child, *, task_status: trio.TaskStatus[Any]) -> None:
        spec = child.spec
        first = _ReadyReporter(task_status)
        # Only the reporter may keep trio's task status (see _ReadyReporter).
        del task_status
        reason = "stopped"
        try:
            while True:
                failure: Exception | None = None
                child.scope = trio.CancelScope()
                status: Any = first if not first.reported else trio.TASK_STATUS_IGNORED
                with child.scope:
                    try:
                        await spec.start(task_status=status)
                    except Exception as exc:
                        if not first.reported:
                            raise  # a child that cannot start fails its starter
                        failure = single_exception(exc)
                if child.scope.cancelled_caught or child.stopping:
                    if child.restart_requested and not child.stopping:
                        child.restart_requested = False
                        if not await self._before_restart(child):
                            reason = f"failed: {child.restart_failure}"
                            return
                        continue
                    reason = "shut down" if child.stopping else "terminated"
                    return
                if not first.reported:
                    raise RhoError(f"child {spec.id!r} returned without reporting ready")
                if failure is None and spec.restart != "permanent":
                    return
                if failure is not None and spec.restart == "temporary":
                    self.last_failure = failure
                    reason = f"failed: {type(failure).__name__}: {failure}"
                    return
                try:
                    self._count_restart(child, failure)
                except SupervisionError:
                    reason = "failed: the supervisor gave up"
                    raise
                self._restart_siblings(child)
                if not await self._before_restart(child):
                    reason = f"failed: {child.restart_failure}"
                    return
        except trio.Cancelled as exc:
            # The supervisor itself is stopping (its block ended, it gave
            # up, or its own parent is cancelling it).
            reason = f"shut down ({exc.reason or 'the supervisor was cancelled'})"
            raise
        finally:
            if self._children.get(spec.id) is child:
                del self._children[spec.id]
            if spec.on_exit is not None:
                spec.on_exit(reason)
            child.set_finished()

    async def _before_restart(self, child: _Child) -> bool:
        """Prepare a restart; False if the child cannot come back.

        A child whose restart preparation fails (a session whose trace can no
        longer be read) is given up alone: one bad child never takes its
        supervisor, and every other child with it, down.
        """
        if child.spec.on_restart is None:
            return True
        try:
            await child.spec.on_restart()
        except Exception as exc:
            cause = single_exception(exc)
            child.restart_failure = f"cannot restart: {type(cause).__name__}: {cause}"
            self.last_failure = cause
            return False
        return True

    def _count_restart(self, child: _Child, failure: Exception | None) -> None:
        """Record a restart; give up (escalate) past the intensity."""
        now = trio.current_time()
        if failure is not None:
            self.last_failure = failure
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > self.period:
            self._restarts.popleft()
        self.restart_count += 1
        if len(self._restarts) > self.max_restarts:
            raise SupervisionError(
                f"supervisor gave up: more than {self.max_restarts} restarts within "
                f"{self.period:g} s (last: child {child.spec.id!r})",
                last_failure=self.last_failure,
                operation=f"restart {child.spec.id}",
            ) from self.last_failure

    def _restart_siblings(self, failed: _Child) -> None:
        if self.strategy == "one_for_one":
            return
        ids = list(self._children)
        position = ids.index(failed.spec.id) if failed.spec.id in ids else len(ids)
        affected = ids if self.strategy == "one_for_all" else ids[position + 1 :]
        for child_id in affected:
            sibling = self._children[child_id]
            if sibling is failed or sibling.scope is None:
                continue
            sibling.restart_requested = True
            sibling.scope.cancel(reason=f"{self.strategy}: {failed.spec.id!r} failed")

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child by its shutdown policy and wait until it is gone."""
        child = self._children.get(child_id)
        if child is None:
            return
        await self._shutdown_child(child)

    async def _shutdown_child(self, child: _Child) -> None:
        child.stopping = True
        spec = child.spec
        if spec.shutdown is not None and spec.stop is not None:
            spec.stop()
            with trio.move_on_after(spec.shutdown):
                await child.wait_finished()
        if not child.finished and child.scope is not None:
            child.scope.cancel(reason=f"shutting down {spec.id!r}")
        await child.wait_finished()

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
        elif self.store is not None:
            session = self.store.create_session(agent_or_session, session_id=session_id)
        else:
            session = Session(agent_or_session, session_id=session_id)
        if (
            session._store is not None
            and self.store is not None
            and session._store.path != self.store.path
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
        return child

    # --- shutdown ---------------------------------------------------------

    async def _shutdown(self) -> None:
        self._closing = True
        # Children stop in parallel, each by its own policy.
        async with trio.open_nursery() as nursery:
            for child in list(self._children.values()):
                nursery.start_soon(self._shutdown_child, child)


def _unwrap_supervision_error(group: BaseExceptionGroup[Any]) -> SupervisionError | None:
    for exc in group.exceptions:
        if isinstance(exc, SupervisionError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _unwrap_supervision_error(exc)
            if found is not None:
                return found
    return None


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
    _shared: Services | None = None,
) -> AsyncIterator[Supervisor]:
    """Open a supervisor; children started on it live until the block ends.

    ``hibernate_after`` (seconds): a session idle that long stops its actor
    and frees its memory, keeping only its address; its next message wakes
    it from the store. ``max_subprocesses`` is the global limit on tool
    subprocesses (bash, rg) running at once. ``shutdown_grace`` is the
    default graceful wait when the block ends. While supervisors are open,
    the garbage collector is tuned for many long-lived objects (see
    ``rho_actors._gc``).
    """
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
                    if store is not None and services.store is not None:
                        store._detach(services.store)
                    for scope in background:
                        scope.cancel(reason="supervisor closing")
                    nursery.cancel_scope.cancel(reason="supervisor closed")
    except BaseExceptionGroup as group:
        escalated = _unwrap_supervision_error(group)
        if escalated is not None:
            raise escalated from None
        raise


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
# processes (``rho-actors monitor --cancel``).
CANCEL_POLL_INTERVAL = 0.5


async def _watch_cancel_requests(supervisor: Supervisor, scope: trio.CancelScope) -> None:
    store = supervisor.store
    assert store is not None
    with scope:
        while True:
            await trio.sleep(CANCEL_POLL_INTERVAL)
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
