"""Cancellation latency: N in-flight runs cancelled at once.

Two scenarios, each against a baseline measured in the same run:

* streaming: N runs are mid-stream (the scripted server, in its own process
  on the other core, trickles text); one ``CancellationToken.cancel()``
  cancels them all. Reported: time until every run has returned
  ``cancelled``, and until the server has counted every stream's
  disconnect. Baseline: N bare ``openai.AsyncOpenAI`` streams under trio,
  cancelled by one cancel scope.
* bash: N runs are inside a ``sleep`` bash tool call. Reported: time until
  every run has returned, and the ``sleep`` processes still alive after
  that (must be 0). Baseline: N ``trio.run_process(["sh", "-c", "sleep"])``
  cancelled by one cancel scope.

    python bench/bench_cancel.py --n 1000 --n-bash 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpx2
import openai
import trio
import trio.testing

from rho_actors import Agent, AgentConfig, CancellationToken, RunResult, open_supervisor

sys.path.insert(0, os.path.dirname(__file__))
from _server import pin_to_core_0, server_process, stats

_WATCHER = """
import sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
def established():
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count
while (armed_with := established()) < n:
    time.sleep(0.01)
print("ARMED", flush=True)
# Other connections (the benchmark's own /_stats client) stay open.
while established() > armed_with - n:
    pass
print(time.perf_counter(), flush=True)
"""


class KernelCloseWatcher:
    """When the server's kernel has seen every client connection close.

    A separate process (on the server's core) polls /proc/net/tcp for the
    server port's established connections; perf_counter is CLOCK_MONOTONIC,
    the same clock in every process. This times the client's closing alone:
    the scripted server's own /_stats count also waits for that process to
    get round to each disconnect.
    """

    def __init__(self, url: str, n: int) -> None:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        cmd = [sys.executable, "-c", _WATCHER, str(port), str(n)]
        if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
            cmd = ["taskset", "-c", "1", *cmd]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    async def armed(self) -> None:
        assert self._proc.stdout is not None
        line = await trio.to_thread.run_sync(self._proc.stdout.readline)
        assert line.strip() == "ARMED", line

    async def closed_at(self) -> float:
        assert self._proc.stdout is not None
        line = await trio.to_thread.run_sync(self._proc.stdout.readline)
        self._proc.wait()
        self._proc.stdout.close()
        return float(line)


async def _poll(done: Callable[[], Awaitable[bool]], limit: float = 120) -> None:
    """Wait for a condition in another process (the server, the process table)."""
    with trio.fail_after(limit):
        while not await done():  # noqa: ASYNC110 - nothing in-process to wait on
            await trio.sleep(0.005)


async def _cancel_all(
    n: int,
    one: Callable[[int], Awaitable[None]],
    ready: Callable[[], Awaitable[bool]],
    token: CancellationToken,
    all_returned: trio.Event,
) -> tuple[float, float]:
    """Start N runs, wait until they are all in flight, cancel them with one call.

    Returns the moment of the cancel and the seconds until every run returned.
    """
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
        await _poll(ready)
        t0 = time.perf_counter()
        token.cancel("bench")
        await all_returned.wait()
        return t0, time.perf_counter() - t0


async def _count(marker: str) -> int:
    result = await trio.run_process(["pgrep", "-fc", marker], capture_stdout=True, check=False)
    return int(result.stdout.strip() or 0)


async def trio_floor(n: int) -> float:
    """What trio itself needs: N tasks blocked reading a TCP socket (inside one
    timeout scope, as every HTTP client read is), cancelled at once, each
    closing its socket. No HTTP, no openai: the floor under both rows below."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(n + 16)
    port = listener.getsockname()[1]
    clients = []
    for _ in range(n):
        sock = trio.socket.socket()
        await sock.connect(("127.0.0.1", port))
        clients.append(sock)
    peers = [listener.accept()[0] for _ in range(n)]

    async def reader(sock: trio.socket.SocketType) -> None:
        with sock, trio.fail_after(600):
            await sock.recv(100)

    try:
        async with trio.open_nursery() as nursery:
            for sock in clients:
                nursery.start_soon(reader, sock)
            await trio.testing.wait_all_tasks_blocked()
            t0 = time.perf_counter()
            nursery.cancel_scope.cancel(reason="bench")
        return (time.perf_counter() - t0) * 1000
    finally:
        for peer in peers:
            peer.close()
        listener.close()


async def bare_streams(url: str, n: int, http: httpx2.AsyncClient) -> tuple[float, float, float]:
    client = openai.AsyncOpenAI(api_key="bench", base_url=url, max_retries=0)
    base = (await stats(http, url))["disconnects"]

    async def one() -> None:
        stream = await client.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async for _ in stream:
            pass

    async def all_open() -> bool:
        return bool(int((await stats(http, url))["open_streams"]) >= n)

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
        await _poll(all_open)
        watcher = KernelCloseWatcher(url, n)
        await watcher.armed()
        t0 = time.perf_counter()
        nursery.cancel_scope.cancel(reason="bench")
    returned = time.perf_counter() - t0

    async def all_closed() -> bool:
        return bool(int((await stats(http, url))["disconnects"]) - base >= n)

    await _poll(all_closed)
    counted = time.perf_counter() - t0
    kernel = await watcher.closed_at() - t0
    with trio.CancelScope(shield=True):
        await client.close()
    return returned * 1000, kernel * 1000, counted * 1000


async def rho_streams(
    url: str, n: int, http: httpx2.AsyncClient
) -> tuple[float, float, float, int]:
    agent = Agent(AgentConfig(model="bench", base_url=url, profile="readonly"))
    for name in agent.registry.names():
        agent.registry.unregister(name)
    base = (await stats(http, url))["disconnects"]
    token = CancellationToken()
    results: list[RunResult] = []
    all_returned = trio.Event()
    async with open_supervisor() as sup:
        sessions = [await sup.start_session(agent) for _ in range(n)]

        async def one(i: int) -> None:
            results.append(await sessions[i].run(prompt="hi", token=token))
            if len(results) == n:
                all_returned.set()

        watcher = KernelCloseWatcher(url, n)

        async def all_open() -> bool:
            if int((await stats(http, url))["open_streams"]) < n:
                return False
            await watcher.armed()
            return True

        t0, returned = await _cancel_all(n, one, all_open, token, all_returned)

        async def all_closed() -> bool:
            return bool(int((await stats(http, url))["disconnects"]) - base >= n)

        await _poll(all_closed)
        counted = time.perf_counter() - t0
        kernel = await watcher.closed_at() - t0
    not_cancelled = sum(1 for r in results if r.status != "cancelled")
    return returned * 1000, kernel * 1000, counted * 1000, not_cancelled


async def bare_sleeps(n: int, marker: str) -> tuple[float, int]:
    async def one() -> None:
        await trio.run_process(["sh", "-c", f"sleep {marker}"], check=False)

    async def all_running() -> bool:
        return await _count(marker) >= n

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
        await _poll(all_running)
        t0 = time.perf_counter()
        nursery.cancel_scope.cancel(reason="bench")
    returned = time.perf_counter() - t0
    await trio.sleep(0.5)
    left = await _count(marker)
    await trio.run_process(["pkill", "-f", marker], check=False)  # the baseline's orphans
    return returned * 1000, left


async def rho_sleeps(url: str, n: int, marker: str) -> tuple[float, int, int]:
    agent = Agent(AgentConfig(model="bench", base_url=url, profile="unrestricted"))
    token = CancellationToken()
    results: list[RunResult] = []
    all_returned = trio.Event()
    async with open_supervisor(max_subprocesses=n) as sup:
        sessions = [await sup.start_session(agent) for _ in range(n)]

        async def one(i: int) -> None:
            results.append(await sessions[i].run(prompt=f"sleep {marker}", token=token))
            if len(results) == n:
                all_returned.set()

        async def all_running() -> bool:
            return await _count(marker) >= n

        _, returned = await _cancel_all(n, one, all_running, token, all_returned)
    await trio.sleep(0.5)
    not_cancelled = sum(1 for r in results if r.status != "cancelled")
    return returned * 1000, await _count(marker), not_cancelled


async def main(n: int, n_bash: int) -> None:
    slow = ("--text-only", "--reply-text", "tick " * 4000, "--chunk-size", "5", "--chunk-ms", "500")
    async with httpx2.AsyncClient(timeout=60) as http:
        with server_process(*slow) as url:
            b_ret, b_kernel, b_counted = await bare_streams(url, n, http)
            r_ret, r_kernel, r_counted, not_cancelled = await rho_streams(url, n, http)
        floor = await trio_floor(n)
        print(f"streaming, N={n}, ms after the cancel:")
        print("                               all runs    server kernel:   server app:")
        print("                               returned    all conns closed all counted")
        print(f"  trio floor: socket reads    {floor:8.1f}    (returned and closed)")
        print(
            f"  bare openai + cancel scope  {b_ret:8.1f}    {b_kernel:8.1f}        {b_counted:8.1f}"
        )
        print(f"  rho_actors + token.cancel   {r_ret:8.1f}    {r_kernel:8.1f}", end="")
        print(f"        {r_counted:8.1f}", end="")
        print(f"   (not cancelled: {not_cancelled})")
        if n_bash <= 0:
            return
        pid = os.getpid()
        bb_ret, bb_left = await bare_sleeps(n_bash, f"30.{pid}1")
        # The server answers "sleep <marker>" prompts with a bash tool call.
        with server_process("--tool-name", "bash", "--tool-arg", "command") as url:
            rb_ret, rb_left, rb_bad = await rho_sleeps(url, n_bash, f"30.{pid}2")
        print(f"bash `sleep 30`, N={n_bash}: all returned / sleep processes left")
        print(f"  bare run_process + scope    {bb_ret:8.1f} ms {bb_left:8d}")
        print(f"  rho_actors + token.cancel   {rb_ret:8.1f} ms {rb_left:8d}", end="")
        print(f"   (not cancelled: {rb_bad})")


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--n-bash", type=int, default=200)
    args = parser.parse_args()
    pin_to_core_0()
    trio.run(main, args.n, args.n_bash)


if __name__ == "__main__":
    cli()
