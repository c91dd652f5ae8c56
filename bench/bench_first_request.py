"""Time to first request: N runs started together, three ways, same server.

* bare: N tasks, each one streamed ``chat.completions.create`` through one
  shared ``openai.AsyncOpenAI`` (the baseline);
* supervised: N sessions started under one open supervisor, each running the
  prompt (session start included in the timing);
* standalone: N ``Session(agent).run(...)`` in a plain ``trio.run``, hosted by
  the ambient host (its start-up included in the timing).

Reported, from the moment the N tasks are started: when the server saw the
first request (its own clock, ``time.monotonic`` being system-wide), and the
median time until a run's first streamed text. Each way gets a fresh server
process, pinned to the other core. Figures are ratios within one run.

    python bench/bench_first_request.py --n 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import openai
import trio

from rho_actors import Agent, AgentConfig, AgentEvent, Session, open_supervisor

sys.path.insert(0, os.path.dirname(__file__))
from _server import pin_to_core_0, server_process, stats

Starter = Callable[[str, int, list[float]], Awaitable[float]]


async def bare(base_url: str, n: int, firsts: list[float]) -> float:
    """Returns the moment the burst started; appends each run's first-text delay."""
    client = openai.AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0)

    async def one(i: int) -> None:
        stream = await client.chat.completions.create(
            model="bench",
            messages=[{"role": "user", "content": f"task {i}"}],
            stream=True,
        )
        seen = False
        async for chunk in stream:
            if not seen and chunk.choices and chunk.choices[0].delta.content:
                firsts.append(time.monotonic() - t0)
                seen = True

    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    await client.close()
    return t0


def _first_text(firsts: list[float], t0: float) -> Callable[[AgentEvent], None]:
    seen = False

    def on_event(event: AgentEvent) -> None:
        nonlocal seen
        if event.type == "text" and not seen:
            firsts.append(time.monotonic() - t0)
            seen = True

    return on_event


def _agent(base_url: str) -> Agent:
    return Agent(AgentConfig(base_url=base_url, model="bench", profile="readonly"))


async def supervised(base_url: str, n: int, firsts: list[float]) -> float:
    agent = _agent(base_url)
    # The supervisor is the application's, opened before the burst.
    async with open_supervisor() as sup:

        async def one(i: int) -> None:
            session = await sup.start_session(agent)
            result = await session.run(f"task {i}", on_event=_first_text(firsts, t0))
            assert result.status == "completed", result.error

        t0 = time.monotonic()
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    return t0


async def standalone(base_url: str, n: int, firsts: list[float]) -> float:
    agent = _agent(base_url)

    async def one(i: int) -> None:
        result = await Session(agent).run(f"task {i}", on_event=_first_text(firsts, t0))
        assert result.status == "completed", result.error

    t0 = time.monotonic()
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    return t0


def measure(way: Starter, n: int) -> tuple[float, float]:
    with server_process("--text-only", "--chunk-ms", "5", "--reply-text", "x" * 40) as url:

        async def main() -> tuple[float, float]:
            firsts: list[float] = []
            t0 = await way(url, n, firsts)
            async with httpx2.AsyncClient() as client:
                counters: dict[str, Any] = await stats(client, url)
            assert int(counters["requests"]) == n, counters
            assert len(firsts) == n, len(firsts)
            first_request = float(counters["first_request_at"]) - t0
            return first_request * 1000, statistics.median(firsts) * 1000

        return trio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pin_to_core_0()
    ways: list[tuple[str, Starter]] = [
        ("bare openai loop", bare),
        ("rho_actors, under an open supervisor", supervised),
        ("rho_actors, standalone Session(agent).run", standalone),
    ]
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in ways}
    for _ in range(args.rounds):  # alternate the ways, take medians
        for name, way in ways:
            rows[name].append(measure(way, args.n))
    print(f"{args.n} runs started together; ms after the start (medians of {args.rounds} rounds)")
    print(f"{'':45} {'first request at server':>24} {'median first text':>18}")
    base_first = statistics.median(r[0] for r in rows[ways[0][0]])
    sup_first = statistics.median(r[0] for r in rows[ways[1][0]])
    for name, _ in ways:
        first = statistics.median(r[0] for r in rows[name])
        text = statistics.median(r[1] for r in rows[name])
        print(
            f"{name:45} {first:16.0f} ({first / base_first:4.2f}x) {text:12.0f}"
            f"   vs supervised {first / sup_first:4.2f}x"
        )


if __name__ == "__main__":
    main()
