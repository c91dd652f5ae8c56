"""The ambient host: what serves the seed API when the caller gave no nursery.

The seed's API has no nursery in it: ``await Session(agent).run(...)``,
``dispatch_prompt(runtime, prompt)`` and ``create_runtime(...)`` sessions
must work in a plain ``trio.run``. rho_actors never starts a task nobody
owns, so each ``trio.run`` gets one *ambient host*: a trio system task,
created on first use, that owns

* one set of model connection pools and one Registry actor, shared by every
  session it hosts, so a thousand standalone runs share pools the way runs
  under one supervisor do;
* one supervisor per session store (and one for sessions without a store),
  each with its own Store actor, started when first needed;
* the background runs that ``dispatch_prompt`` starts without a nursery.

A standalone session is hosted while someone uses it and released (its actor
stopped, its memory kept on the Session object) when the last caller leaves,
so a program that makes sessions in a loop does not collect idle actors.

The host lives exactly as long as the ``trio.run``: trio cancels system tasks
when the main task returns, and the host then stops its sessions the way a
supervisor does (final records in bounded, shielded scopes). A failure inside
hosted work reaches whoever awaits it (the caller of ``run()``, or the
``AgentHandle``); the host catches everything else, logs it and goes on, so
nothing it runs can crash trio.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._hosting import install_ambient_hosting
from ._llm import open_model_clients
from ._mcp import serve_mcp
from ._registry import serve_registry
from ._sandboxes import serve_sandboxes
from ._services import Services
from ._session import Session
from ._session_store import SessionStore
from ._supervisor import Supervisor, open_supervisor

logger = logging.getLogger("rho_actors.host")

Work = Callable[[], Awaitable[Any]]


class AmbientHost:
    """The per-``trio.run`` owner of standalone sessions and nursery-less dispatches."""

    def __init__(self) -> None:
        self._ready = trio.Event()
        self._failure: BaseException | None = None
        self._nursery: trio.Nursery | None = None
        self._shared: Services | None = None
        self._supervisors: dict[int, Supervisor] = {}
        self._starting: dict[int, trio.Event] = {}
        # Work submitted by synchronous callers (dispatch_prompt): unbounded
        # because a synchronous caller cannot wait for room; each item is one
        # run its caller asked for, and the host starts them at once.
        self._submit, self._submitted = trio.open_memory_channel[Work](math.inf)

    async def _main(self) -> None:
        try:
            async with (
                open_model_clients() as clients,
                serve_mcp() as mcp,
                trio.open_nursery() as nursery,
            ):
                registry = await nursery.start(serve_registry)
                sandboxes = await nursery.start(serve_sandboxes)
                self._shared = Services(
                    clients=clients, registry=registry, store=None, sandboxes=sandboxes, mcp=mcp
                )
                self._nursery = nursery
                self._ready.set()
                try:
                    async for work in self._submitted:
                        nursery.start_soon(_guarded, work)
                finally:
                    registry.close()
                    sandboxes.close()
        except Exception as exc:  # never crash trio from a system task
            logger.exception("the ambient host failed")
            self._failure = exc
        finally:
            self._ready.set()

    async def _wait_ready(self) -> trio.Nursery:
        await self._ready.wait()
        if self._nursery is None or self._failure is not None:
            raise RuntimeError("the ambient host is not running") from self._failure
        return self._nursery

    def submit(self, work: Work) -> None:
        """Run ``work`` in the host, starting at once (from synchronous code too)."""
        self._submit.send_nowait(work)

    async def supervisor(self, store: SessionStore | None) -> Supervisor:
        """The host's supervisor for ``store``, started on first use."""
        key = id(store) if store is not None else 0
        nursery = await self._wait_ready()
        while True:
            found = self._supervisors.get(key)
            if found is not None:
                return found
            starting = self._starting.get(key)
            if starting is None:
                break
            await starting.wait()
        self._starting[key] = done = trio.Event()
        try:
            supervisor: Supervisor = await nursery.start(self._serve_supervisor, key, store)
        finally:
            del self._starting[key]
            done.set()
        return supervisor

    async def _serve_supervisor(
        self, key: int, store: SessionStore | None, *, task_status: trio.TaskStatus[Supervisor]
    ) -> None:
        reported = False
        try:
            async with open_supervisor(store=store, _shared=self._shared) as supervisor:
                self._supervisors[key] = supervisor
                task_status.started(supervisor)
                reported = True
                await trio.sleep_forever()
        except Exception as exc:
            if not reported:
                raise  # the caller that asked for it gets the error
            # Its sessions' callers were answered as it went down; the next
            # caller gets a fresh supervisor.
            logger.error("an ambient supervisor failed: %s", exc)
        finally:
            self._supervisors.pop(key, None)


async def _host_standalone(session: Session) -> None:
    """Host a session nobody hosts in this run's ambient host (see rho_actors._hosting)."""
    store = session._store
    if store is not None and not isinstance(store, SessionStore):
        raise TypeError(f"a session's store must be a SessionStore, not {type(store).__name__}")
    supervisor = await ambient_host().supervisor(store)
    # Another Session object for the same id (the original of a resumed
    # copy) may still be hosted, idle: it goes first, so one trace never
    # has two writers.
    while (other := supervisor.sessions.get(session.id)) not in (None, session):
        assert other is not None
        await other._leave_ambient_host()
    await supervisor.start_session(session)


install_ambient_hosting(_host_standalone)


async def _guarded(work: Work) -> None:
    try:
        await work()
    except Exception:
        logger.exception("hosted work failed outside any caller")


_HOST: trio.lowlevel.RunVar[AmbientHost] = trio.lowlevel.RunVar("rho_actors_ambient_host")


def ambient_host() -> AmbientHost:
    """This ``trio.run``'s host, started now if it is not running yet."""
    try:
        return _HOST.get()
    except LookupError:
        host = AmbientHost()
        _HOST.set(host)
        trio.lowlevel.spawn_system_task(host._main, name="rho_actors ambient host")
        return host
