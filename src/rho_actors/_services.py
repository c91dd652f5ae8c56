"""The shared actors a session needs: model clients, the Registry, the Store.

A supervisor holds one set for all its sessions. Sessions used on their own
(``await Session(agent).run(...)`` in a plain ``trio.run``) are hosted by the
ambient host of that run (``rho_actors._host``), whose supervisors share one
set of pools and one Registry.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from ._llm import ModelClients, open_model_clients
from ._mcp import McpServers, serve_mcp
from ._registry import DEFAULT_MAX_SUBPROCESSES, RegistryRef, serve_registry
from ._sandboxes import SandboxesRef, serve_sandboxes
from ._store._actor import StoreRef, TelemetrySink, serve_store
from ._store._backend import StoreBackend


@attrs.frozen(kw_only=True, slots=True)
class Services:
    clients: ModelClients
    registry: RegistryRef
    store: StoreRef | None
    sandboxes: SandboxesRef | None = None
    mcp: McpServers | None = None


@asynccontextmanager
async def open_services(
    backend: StoreBackend | None,
    telemetry: TelemetrySink | None = None,
    *,
    max_subprocesses: int = DEFAULT_MAX_SUBPROCESSES,
    shared: Services | None = None,
    lock: threading.Lock | None = None,
) -> AsyncIterator[Services]:
    """The services for one supervisor; with ``shared``, reuse its pools and Registry
    (the ambient host's) and start only a Store actor of our own."""
    async with contextlib.AsyncExitStack() as stack:
        clients = (
            shared.clients
            if shared is not None
            else await stack.enter_async_context(open_model_clients())
        )
        nursery = await stack.enter_async_context(trio.open_nursery())
        if shared is not None:
            registry = shared.registry
        else:
            registry = await nursery.start(
                functools.partial(serve_registry, max_subprocesses=max_subprocesses)
            )
        if shared is not None:
            sandboxes = shared.sandboxes
            mcp = shared.mcp
        else:
            sandboxes = await nursery.start(serve_sandboxes)
            mcp = await stack.enter_async_context(serve_mcp())
        store = None
        if backend is not None or telemetry is not None:
            store = await nursery.start(
                functools.partial(serve_store, backend, telemetry, lock=lock)
            )
        try:
            yield Services(
                clients=clients, registry=registry, store=store, sandboxes=sandboxes, mcp=mcp
            )
        finally:
            # Closing the mailboxes lets both actors drain and return on their own,
            # so writes already accepted by the Store are committed.
            if shared is None:
                registry.close()
                if sandboxes is not None:
                    sandboxes.close()
            if store is not None:
                store.close()
