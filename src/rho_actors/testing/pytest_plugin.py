"""Pytest fixtures for testing agents against the scripted model server (and a fake Daytona).

Enable with ``pytest_plugins = ["rho_actors.testing.pytest_plugin"]`` in a
root ``conftest.py`` (or a test module). The fixtures are async, so they
need pytest-trio, which runs them in the trio run of any trio test that
requests them (``trio_mode = true``, or ``@pytest.mark.trio``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio.testing

from ._daytona import FakeDaytona, open_fake_daytona
from ._server import ScriptedServer, open_scripted_server

__all__ = [
    "LOOPBACK_AUTOJUMP_THRESHOLD",
    "fake_daytona",
    "loopback_autojump_clock",
    "scripted_server",
]

LOOPBACK_AUTOJUMP_THRESHOLD = 0.02
"""Seconds of real idle time before :func:`loopback_autojump_clock` jumps.

On a loaded machine the kernel can take milliseconds to deliver loopback
bytes; 5 ms still lost races with two CPU hogs on two cores, 20 ms did not."""


@pytest.fixture
async def scripted_server() -> AsyncIterator[ScriptedServer]:
    """A started server with an empty script whose default answer is "ok".

    It runs in the test's own trio run, so it shares the test's clock
    (``autojump_clock`` makes scripted delays instant) and is stopped when
    the test ends. Script it with ``scripted_server.add(...)`` and point the
    client at ``scripted_server.base_url``.
    """
    async with open_scripted_server() as server:
        yield server


@pytest.fixture
async def fake_daytona() -> AsyncIterator[FakeDaytona]:
    """A started fake Daytona API that accepts any API key.

    Drive the real SDK at it from worker threads (``trio.to_thread.run_sync``):
    the SDK is synchronous and the fake runs in the test's trio run. Every
    sandbox directory is removed and every command killed when the test ends.
    Use real time: the SDK's timeouts are not on trio's clock.
    """
    async with open_fake_daytona() as fake:
        yield fake


@pytest.fixture
def loopback_autojump_clock() -> trio.testing.MockClock:
    """An autojump clock that is safe with real sockets; use it instead of ``autojump_clock``.

    pytest-trio's ``autojump_clock`` jumps the moment every task is blocked,
    even when bytes are still in flight through the kernel, so a client's
    deadline (openai's read timeout included) can fire before the server's
    reply arrives. Waiting a little real time first lets in-flight I/O land;
    each jump then costs that much real time.
    """
    return trio.testing.MockClock(autojump_threshold=LOOPBACK_AUTOJUMP_THRESHOLD)
