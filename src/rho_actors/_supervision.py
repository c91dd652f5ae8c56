"""Generic supervision, as in Erlang/OTP: children as data, restarts by strategy,
escalation when it is hopeless.

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
* A child whose restart cannot be prepared (``on_restart`` raises) is given
  up alone; its siblings and the supervisor carry on.

This module knows nothing of sessions: ``rho_actors._supervisor`` builds
session hosting (start, stop, wake, hibernate, recover) on it.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

import attrs
import trio

from ._errors import RhoError, SupervisionError, single_exception

logger = logging.getLogger("rho_actors.supervisor")

RestartType = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]

DEFAULT_SHUTDOWN_GRACE = 5.0
DEFAULT_MAX_RESTARTS = 3
DEFAULT_PERIOD = 5.0

StartFn = Callable[..., Awaitable[Any]]


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


class ChildSpecLike(Protocol):
    """What a supervisor reads from a child spec (:class:`ChildSpec`, or a lighter object
    with the same members, such as a hosted session's)."""

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

    def __init__(self, spec: ChildSpecLike) -> None:
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


class Supervision:
    """A nursery of supervised children (see the module docstring)."""

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        strategy: Strategy,
        max_restarts: int,
        period: float,
    ) -> None:
        self._nursery = nursery
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period = period
        self._children: dict[str, _Child] = {}
        self._restarts: collections.deque[float] = collections.deque()
        self.last_failure: BaseException | None = None
        self.restart_count = 0
        self._closing = False

    @property
    def children(self) -> list[str]:
        """Ids of the running children, in start order."""
        return list(self._children)

    async def start_child(self, spec: ChildSpec) -> Any:
        """Start a child and wait until it reports ready; returns what it reported."""
        return await self._start_child(spec)

    async def _start_child(self, spec: ChildSpecLike) -> Any:
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
        logger.warning(
            "restarting %s (%s)",
            child.spec.id,
            f"failed: {type(failure).__name__}: {failure}" if failure is not None else "it exited",
        )
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

    async def _shutdown(self) -> None:
        self._closing = True
        # Children stop in parallel, each by its own policy.
        async with trio.open_nursery() as nursery:
            for child in list(self._children.values()):
                nursery.start_soon(self._shutdown_child, child)


def unwrap_supervision_error(group: BaseExceptionGroup[Any]) -> SupervisionError | None:
    for exc in group.exceptions:
        if isinstance(exc, SupervisionError):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = unwrap_supervision_error(exc)
            if found is not None:
                return found
    return None
