"""The Store actor is the only door: a backend never sees two callers at once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
import trio.lowlevel

from rho_actors import Agent, DirectoryBackend, SessionStore, open_supervisor
from rho_actors.testing import Reply, ScriptedServer

_METHODS = (
    "append",
    "create",
    "write_meta",
    "write_config",
    "load",
    "read_meta",
    "list",
    "info",
    "read_config",
    "request_cancel",
    "take_cancel_requests",
    "release",
    "exists",
)


class WatchedBackend(DirectoryBackend):
    """A real directory backend that records any call made while another is running."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._guard = threading.Lock()
        self._active = 0
        self._owner = 0
        self.overlaps = 0
        self.calls = 0
        self.threads: set[int] = set()

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name not in _METHODS:
            return value

        def watched(*args: Any, **kwargs: Any) -> Any:
            me = threading.get_ident()
            with self._guard:
                # A method calling another (list -> info) is one caller;
                # another thread inside at the same time is an overlap.
                if self._active and self._owner != me:
                    self.overlaps += 1
                self._active += 1
                self._owner = me
                self.calls += 1
                self.threads.add(me)
            try:
                return value(*args, **kwargs)
            finally:
                with self._guard:
                    self._active -= 1

        return watched


async def test_readers_cancels_and_writers_never_overlap(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """list(), resume(), alist() polling and cancel requests, sync from threads and async
    through the actor, all during heavy writing: no backend call overlaps another."""
    backend = WatchedBackend(tmp_path / "s")
    store = SessionStore(backend=backend)
    server.default = lambda request: Reply.text("ok " * 20, chunk_size=5)
    agent = make_agent()
    stop = trio.Event()
    errors: list[BaseException] = []

    async with open_supervisor(store=store) as sup:
        sessions = [await sup.start_session(agent) for _ in range(20)]
        for session in sessions:
            await session.run("seed")

        async def writer(index: int) -> None:
            for turn in range(8):
                result = await sessions[index].run(f"turn {turn}")
                assert result.status in ("completed", "cancelled"), result.error

        def sync_reader() -> None:
            # The seed's synchronous calls, from another thread entirely.
            while not stop.is_set():
                try:
                    store.list()
                    store.resume(sessions[0].id, agent)
                    store.request_cancel(sessions[1].id, "from a thread")
                except Exception as exc:
                    errors.append(exc)
                    return

        async def async_reader() -> None:
            while not stop.is_set():
                await store.alist()  # a monitor's polling, through the Store actor
                await store.aload_state(sessions[2].id)
                await store.arequest_cancel(sessions[3].id, "from a task")
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, sync_reader)
            nursery.start_soon(async_reader)
            async with trio.open_nursery() as writers:
                for index in range(len(sessions)):
                    writers.start_soon(writer, index)
            stop.set()
    assert not errors, errors
    assert backend.calls > 500 and len(backend.threads) >= 2
    assert backend.overlaps == 0
    for info in store.list():
        assert info.status in ("completed", "cancelled"), info
