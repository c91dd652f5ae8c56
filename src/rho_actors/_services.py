"""The shared actors a session needs: model clients, the Registry, the Store.

A supervisor holds one set for all its sessions. A session used on its own
(``await Session(agent).run(...)`` in a plain ``trio.run``) opens a private
set for the duration of each call, so there is never a task left running
outside an ``async with`` block.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from ._llm import ModelClients, open_model_clients
from ._registry import DEFAULT_MAX_SUBPROCESSES, RegistryRef, serve_registry
from ._store._actor import StoreRef, TelemetrySink, serve_store
from ._store._backend import StoreBackend


@attrs.frozen(kw_only=True, slots=True)
class Services:
    clients: ModelClients
    registry: RegistryRef
    store: StoreRef | None


@asynccontextmanager
async def open_services(
    backend: StoreBackend | None,
    telemetry: TelemetrySink | None = None,
    *,
    max_subprocesses: int = DEFAULT_MAX_SUBPROCESSES,
) -> AsyncIterator[Services]:
    async with open_model_clients() as clients, trio.open_nursery() as nursery:
        registry = await nursery.start(
            functools.partial(serve_registry, max_subprocesses=max_subprocesses)
        )
        store = None
        if backend is not None or telemetry is not None:
            store = await nursery.start(serve_store, backend, telemetry)
        try:
            yield Services(clients=clients, registry=registry, store=store)
        finally:
            # Closing the mailboxes lets both actors drain and return on their own,
            # so writes already accepted by the Store are committed.
            registry.close()
            if store is not None:
                store.close()
