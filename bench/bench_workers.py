"""Workers on PostgreSQL: cross-process cancel latency and failover time.

Starts a throw-away PostgreSQL server (tests/pg_server.py), the scripted
model server, and worker processes (``rho-actors worker``), then measures:

* cancel latency: from ``QueuedRun.cancel()`` in this process until the
  worker hosting the run has dropped its model stream (the scripted server
  sees the disconnect); baseline in the same run: ``session.cancel()`` of a
  local session, to its return;
* failover time: from ``kill -9`` of the worker hosting a run to another
  worker claiming it, against the lease (``--lease``) it is bound by.

    python bench/bench_workers.py --repeat 10 --lease 2
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import trio

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import pg_server

from rho_actors import Agent, AgentConfig, QueuedRun, Session, SessionStore, enqueue
from rho_actors.testing import Reply, ScriptedServer, open_scripted_server


async def main(repeat: int, lease: float) -> None:
    with pg_server.postgres_server() as admin, tempfile.TemporaryDirectory() as work:
        url = pg_server.fresh_database(admin)
        store = SessionStore(url)
        async with open_scripted_server(
            default=lambda request: Reply.text("slow", first_byte_delay=3600)
        ) as server:
            config = AgentConfig(
                base_url=server.base_url, model="scripted", working_dir=work, profile="readonly"
            )
            workers = [await _worker(url, lease) for _ in range(2)]
            try:
                cancels = [await _cancel_once(store, config, server) for _ in range(repeat)]
                local = [await _local_cancel(config, server) for _ in range(repeat)]
                failovers = [
                    await _failover_once(store, config, url, lease, workers)
                    for _ in range(max(1, repeat // 3))
                ]
            finally:
                for proc in workers:
                    proc.kill()
                    await proc.wait()
    print(f"cancel latency over {repeat} runs (ms):")
    for name, figures in (
        ("local session.cancel()      ", local),
        ("QueuedRun.cancel() -> worker", cancels),
    ):
        print(f"  {name}  median {statistics.median(figures):7.1f}   max {max(figures):7.1f}")
    print(
        f"failover after kill -9 with a {lease:g} s lease (s): "
        f"median {statistics.median(failovers):.2f}   max {max(failovers):.2f}"
    )


async def _worker(url: str, lease: float) -> trio.Process:
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "rho_actors", "worker", "--store", url, "--lease", str(lease)],
        stderr=subprocess.DEVNULL,
    )


# The polling loops below watch other processes (the workers, the database):
# nothing in this process could be waited on instead.


async def _claimed(run: QueuedRun) -> None:
    while await run.status() != "claimed":  # noqa: ASYNC110
        await trio.sleep(0.01)


async def _cancel_once(store: SessionStore, config: AgentConfig, server: ScriptedServer) -> float:
    before = len(server.chat_requests)
    run = await enqueue(store, "wait", agent=config)
    await _claimed(run)
    while len(server.chat_requests) == before:  # noqa: ASYNC110
        await trio.sleep(0.01)
    request = server.chat_requests[-1]
    started = time.perf_counter()
    await run.cancel("bench")
    # The cancel has reached the worker when its model stream is dropped.
    while not request.disconnected:  # noqa: ASYNC110
        await trio.sleep(0.001)
    took = (time.perf_counter() - started) * 1000
    await run.wait()
    return took


async def _local_cancel(config: AgentConfig, server: ScriptedServer) -> float:
    session = Session(Agent(config))
    before = len(server.chat_requests)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run, "wait")
        while len(server.chat_requests) == before:  # noqa: ASYNC110
            await trio.sleep(0.01)
        started = time.perf_counter()
        await session.cancel("bench")
    return (time.perf_counter() - started) * 1000


async def _failover_once(
    store: SessionStore, config: AgentConfig, url: str, lease: float, workers: list[trio.Process]
) -> float:
    backend: Any = store.backend
    run = await enqueue(store, "wait", agent=config)
    await _claimed(run)
    job = await store._in_thread(backend.job, run.id)
    owner_pid = int(job["worker"].split(":")[1])
    victim = next(p for p in workers if p.pid == owner_pid)
    victim.send_signal(signal.SIGKILL)
    killed = time.perf_counter()
    await victim.wait()
    workers.remove(victim)
    workers.append(await _worker(url, lease))
    while True:
        job = await store._in_thread(backend.job, run.id)
        if job["status"] == "claimed" and int(job["attempts"]) > 1:
            break
        await trio.sleep(0.01)
    took = time.perf_counter() - killed
    await run.cancel("bench")
    return took


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--lease", type=float, default=2.0)
    args = parser.parse_args()
    trio.run(main, args.repeat, args.lease)
