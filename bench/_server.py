"""The scripted model server in its own process, for benchmarks.

Running it out of process keeps its CPU out of the figures; it is pinned to
core 1 (the benchmark pins itself to core 0) when the machine has two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2


@contextmanager
def server_process(*args: str) -> Iterator[str]:
    """Start ``python -m rho_actors.testing serve ARGS``; yield its base URL."""
    cmd = [sys.executable, "-m", "rho_actors.testing", "serve", "--backlog", "16384", *args]
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"server did not start: {line!r}")
        yield line.split(" ", 1)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stdin):
            if stream is not None:
                stream.close()


def pin_to_core_0() -> None:
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})


async def stats(client: httpx2.AsyncClient, base_url: str) -> dict[str, Any]:
    """The server's counters (requests, open streams, disconnects...)."""
    response = await client.get(base_url.removesuffix("/v1") + "/_stats")
    result: dict[str, Any] = response.json()
    return result
