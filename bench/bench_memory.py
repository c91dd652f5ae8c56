"""Memory per session: awake and idle, and hibernated; construction time.

* awake: N sessions started under one supervisor, idle (their actor task
  waiting on its mailbox). Baseline: N bare trio tasks each waiting on its
  own memory channel, the least an actor with a mailbox can cost.
* hibernated: the same N sessions after one run each, hibernated
  (``Supervisor.hibernate_idle``): no task, no state in memory, only the
  address. The figure is the live allocations that go away when the
  hibernated sessions are dropped, divided by N.
* construction: ``Agent(config)`` and ``Session(agent)``, per object.

Figures are RSS growth divided by N (/proc/self/status), each measured in a
fresh process, or live Python allocations (tracemalloc) where marked.

    python bench/bench_memory.py --n 10000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import trio

from rho_actors import Agent, AgentConfig, Session, SessionStore, open_supervisor
from rho_actors._tools import _FUNCTION_TOOLS

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
            sup.hibernate_idle()
            with trio.fail_after(600):
                while not all(s.hibernating for s in started):  # noqa: ASYNC110
                    await trio.sleep(0.05)
            # Idle keep-alive connections left by the burst belong to the
            # supervisor's pools, not to the sessions: drop them first.
            await sup.services.clients.aclose()
            await trio.testing.wait_all_tasks_blocked()
            gc.collect()
            with_hibernated = used()
            # What the hibernated sessions hold is what goes away with them.
            # (Measuring against the start instead would also count what the
            # burst of runs left behind: grown dicts and sets, interned
            # strings, lazily imported modules.)
            keep = started[0]
            for session in started[1:]:
                del sup.sessions[session.id]
            del started
            gc.collect()
            hibernated = (with_hibernated - used()) / (n - 1)
            tracemalloc.stop()
            woken = await _wake_one(keep)
            assert woken == "ok", woken
            return awake, hibernated


async def _wake_one(session: Session) -> str:
    result = await session.run(prompt="wake up")
    return result.text


async def _add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


def with_a_tool(n: int) -> tuple[float, float]:
    """Agent(config) + one typed async tool + Session(agent), per agent (us): as
    built now, and with the tool's schema derived every time (the cost before
    it was cached)."""
    config = AgentConfig(model="bench", profile="readonly", base_url="http://127.0.0.1:1/v1")

    def build(tool: Any) -> None:
        agent = Agent(config)
        agent.registry.register(tool)
        Session(agent)

    build(_add)
    t0 = time.perf_counter()
    for _ in range(n):
        build(_add)
    cached = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        _FUNCTION_TOOLS.clear()  # what each build cost before the schema was cached
        build(_add)
    derived = (time.perf_counter() - t0) / n * 1e6
    return cached, derived


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


async def phase(name: str, n: int) -> None:
    """One measurement, in a process of its own (see :func:`main`)."""
    if name == "bare":
        figures: tuple[float, ...] = (await bare_tasks(n),)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures = await sessions(n, Path(tmp), traced=name == "traced")
    print(json.dumps(figures))


def run_phase(name: str, n: int) -> list[float]:
    """Each RSS figure comes from a fresh process: memory freed by an earlier
    phase stays mapped, and a later phase reusing it would look cheaper."""
    out = subprocess.run(
        [sys.executable, __file__, "--n", str(n), "--phase", name],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    figures: list[float] = json.loads(out.strip().splitlines()[-1])
    return figures


def main(n: int) -> None:
    (bare,) = run_phase("bare", n)
    awake_rss, _ = run_phase("rss", n)
    awake_traced, hibernated = run_phase("traced", n)
    agent_us, session_us = construction(2000)
    print(f"N={n}")
    print(f"  baseline: bare task + memory channel (RSS)     {bare / 1024:6.2f} KiB each")
    print(f"  awake idle session actor (RSS)                 {awake_rss / 1024:6.2f} KiB each")
    print(f"  awake idle session actor (live allocations)    {awake_traced / 1024:6.2f} KiB each")
    print(f"  hibernated session (live allocations)          {hibernated / 1024:6.2f} KiB each")
    print(f"  Agent(config)  {agent_us:7.1f} us   Session(agent)  {session_us:7.1f} us")
    cached, derived = with_a_tool(2000)
    print(
        f"  Agent + one typed tool + Session  {cached:7.1f} us"
        f"   (schema derived every time: {derived:7.1f} us, {derived / cached:.1f}x)"
    )


if __name__ == "__main__":
    import trio.testing

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--phase", choices=["bare", "rss", "traced"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        trio.run(phase, args.phase, args.n)
    else:
        main(args.n)
