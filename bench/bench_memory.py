"""Memory per session: awake and idle, and hibernated; construction time.

* awake: N sessions started under one supervisor, idle (their actor task
  waiting on its mailbox). Baseline: N bare trio tasks each waiting on its
  own memory channel, the least an actor with a mailbox can cost.
* hibernated: the same N sessions after one run each and ``hibernate_after``
  has passed: no task, no state in memory, only the address.
* construction: ``Agent(config)`` and ``Session(agent)``, per object.

Figures are RSS growth divided by N (this process, /proc/self/status).

    python bench/bench_memory.py --n 10000
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import trio

from rho_actors import Agent, AgentConfig, Cancel, Session, SessionStore, open_supervisor

sys.path.insert(0, os.path.dirname(__file__))
from _server import server_process


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def bare_tasks(n: int) -> float:
    gc.collect()
    before = rss()
    channels = []
    async with trio.open_nursery() as nursery:
        for _ in range(n):
            send, receive = trio.open_memory_channel[object](64)
            channels.append(send)
            nursery.start_soon(receive.receive)
        await trio.testing.wait_all_tasks_blocked()
        gc.collect()
        per = (rss() - before) / n
        nursery.cancel_scope.cancel(reason="bench")
    return per


async def sessions(n: int, root: Path, *, traced: bool) -> tuple[float, float]:
    """Per-session memory awake and hibernated.

    Untraced: RSS growth (awake only; RSS never shrinks after the runs, the
    allocator keeps its arenas). Traced: live Python allocations, which do
    go down when hibernation frees a session.
    """
    # The server runs in its own process: in this one, its record of every
    # request would be counted as the sessions' memory.
    with server_process("--text-only", "--reply-text", "ok") as url:
        agent = Agent(AgentConfig(base_url=url, model="bench", profile="readonly"))
        store = SessionStore(root)
        async with open_supervisor(store=store, hibernate_after=3600) as sup:
            gc.collect()
            if traced:
                tracemalloc.start()

            def used() -> int:
                return tracemalloc.get_traced_memory()[0] if traced else rss()

            before = used()
            started = [await sup.start_session(agent) for _ in range(n)]
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            awake = (used() - before) / n
            if not traced:
                return awake, float("nan")
            # One run each (so each has a trace to wake from), then hibernate all.
            async with trio.open_nursery() as nursery:
                for session in started:
                    nursery.start_soon(session.run, "hello")
            for session in started:
                session._hibernate_after = 0.0
                if session._mailbox is not None:
                    session._mailbox.put_nowait(_nudge())
            with trio.fail_after(600):
                while not all(s.hibernating for s in started):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            # Idle keep-alive connections left by the burst belong to the
            # supervisor's pools, not to the sessions: drop them first.
            await sup.services.clients.aclose()
            gc.collect()
            hibernated = (used() - before) / n
            tracemalloc.stop()
            woken = await _wake_one(started[0])
            assert woken == "ok", woken
            return awake, hibernated


def _nudge() -> Cancel:
    return Cancel(reason="nudge: re-arm the hibernation timer")


async def _wake_one(session: Session) -> str:
    result = await session.run(prompt="wake up")
    return result.text


def construction(n: int) -> tuple[float, float]:
    config = AgentConfig(model="bench", profile="readonly", base_url="http://127.0.0.1:1/v1")
    t0 = time.perf_counter()
    for _ in range(n):
        Agent(config)
    agent_us = (time.perf_counter() - t0) / n * 1e6
    agent = Agent(config)
    t0 = time.perf_counter()
    for _ in range(n):
        Session(agent)
    session_us = (time.perf_counter() - t0) / n * 1e6
    return agent_us, session_us


async def main(n: int) -> None:
    bare = await bare_tasks(n)
    with tempfile.TemporaryDirectory() as tmp:
        awake_rss, _ = await sessions(n, Path(tmp) / "a", traced=False)
        awake_traced, hibernated = await sessions(n, Path(tmp) / "b", traced=True)
    agent_us, session_us = construction(2000)
    print(f"N={n}")
    print(f"  baseline: bare task + memory channel (RSS)     {bare / 1024:6.2f} KiB each")
    print(f"  awake idle session actor (RSS)                 {awake_rss / 1024:6.2f} KiB each")
    print(f"  awake idle session actor (live allocations)    {awake_traced / 1024:6.2f} KiB each")
    print(f"  hibernated session (live allocations)          {hibernated / 1024:6.2f} KiB each")
    print(f"  Agent(config)  {agent_us:7.1f} us   Session(agent)  {session_us:7.1f} us")


if __name__ == "__main__":
    import trio.testing

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    trio.run(main, parser.parse_args().n)
