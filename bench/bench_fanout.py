"""Client CPU per model call under fan-out: rho_actors against a bare openai loop.

A *run* is two streamed model calls around one tool call (the scripted
server answers a user message with a tool call, and a tool result with
text). For each concurrency N we run N runs at once, three times:

* baselines: a bare ``openai.AsyncOpenAI`` streaming loop under trio doing
  the same two calls per run by hand, once through one shared client and
  once with the runs spread over ``--pools`` clients (50 by default: its
  best configuration at scale, where one pool's bookkeeping grows);
* rho_actors: N sessions under one supervisor, each running the prompt
  through the full actor machinery (events, Registry actor, state).

The figure is client CPU (user+sys of this process) divided by model calls.
The server runs in its own process, pinned to another core when possible.
Figures are ratios within one run; absolute numbers depend on the machine.

    python bench/bench_fanout.py --n 100 1000
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import openai
import trio

from rho_actors import Agent, AgentConfig, open_supervisor

sys.path.insert(0, os.path.dirname(__file__))
from _server import pin_to_core_0, server_process


async def bare_loop(base_url: str, n: int, pools: int = 1) -> int:
    """N concurrent runs of two streamed calls, spread over ``pools`` AsyncOpenAI
    clients (each with its own connection pool; 1: one shared client)."""
    clients = [
        openai.AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0) for _ in range(pools)
    ]
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "echo",
                "description": "Echo text.",
                "parameters": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
            },
        }
    ]
    calls = 0

    async def one_run(i: int) -> None:
        nonlocal calls
        messages: list[Any] = [
            {"role": "system", "content": "You are a benchmark."},
            {"role": "user", "content": f"task {i}"},
        ]
        client = clients[i % pools]
        for _ in range(2):
            stream = await client.chat.completions.create(
                model="bench",
                messages=messages,
                tools=tools,
                stream=True,
                stream_options={"include_usage": True},
            )
            text: list[str] = []
            call_id, name, args = "", "", []
            async for chunk in stream:
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                    for tc in delta.tool_calls or ():
                        call_id = tc.id or call_id
                        if tc.function is not None:
                            name += tc.function.name or ""
                            args.append(tc.function.arguments or "")
            calls += 1
            if not name:
                return
            arguments = "".join(args)
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(text) or None,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": name, "arguments": arguments},
                        }
                    ],
                }
            )
            messages.append(
                {"role": "tool", "tool_call_id": call_id, "content": json.loads(arguments)["text"]}
            )

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one_run, i)
    for client in clients:
        await client.close()
    return calls


async def rho_runs(base_url: str, n: int) -> int:
    """N sessions under one supervisor, each running one prompt with one tool call."""
    agent = Agent(
        AgentConfig(
            system_prompt="You are a benchmark.",
            model="bench",
            base_url=base_url,
            profile="readonly",
            api_key="bench",
        )
    )
    # Only the echo tool, so the request matches the baseline's.
    for name in agent.registry.names():
        agent.registry.unregister(name)

    async def echo(text: str) -> str:
        """Echo text."""
        return text

    agent.registry.register(echo)
    calls = 0
    bad: list[str] = []
    async with open_supervisor() as sup:
        sessions = [await sup.start_session(agent) for _ in range(n)]

        async def one_run(i: int) -> None:
            nonlocal calls
            result = await sessions[i].run(prompt=f"task {i}")
            calls += int(result.usage.get("api_calls", 0))
            if result.status != "completed":
                bad.append(f"{result.status}: {result.error}")

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one_run, i)
    if bad:
        raise RuntimeError(f"{len(bad)} runs failed, e.g. {bad[0]}")
    return calls


def measure(fn: Callable[..., Any], base_url: str, n: int, *extra: Any) -> tuple[float, int, float]:
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    calls = trio.run(fn, base_url, n, *extra)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return cpu / max(calls, 1) * 1000, calls, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--first-byte-ms", type=int, default=200)
    parser.add_argument("--chunk-ms", type=int, default=5)
    parser.add_argument(
        "--pools", type=int, default=50, help="clients the spread-out bare loop uses (its best)"
    )
    args = parser.parse_args()
    pin_to_core_0()
    print(
        f"{'N':>6} {'bare 1 pool':>12} {f'bare {args.pools} pools':>14} {'rho_actors':>11}"
        f" {'vs best bare':>13} {'calls':>7}   (client CPU ms per model call)"
    )
    for n in args.n:
        with server_process(
            "--first-byte-ms", str(args.first_byte_ms), "--chunk-ms", str(args.chunk_ms)
        ) as url:
            bare, bare_calls, _ = measure(bare_loop, url, n, 1)
            spread, spread_calls, _ = measure(bare_loop, url, n, args.pools)
            ours, our_calls, _ = measure(rho_runs, url, n)
        assert bare_calls == spread_calls == our_calls == 2 * n, (bare_calls, our_calls)
        best = min(bare, spread)
        row = f"{n:>6} {bare:>12.2f} {spread:>14.2f} {ours:>11.2f}"
        print(f"{row} {ours / best:>13.2f} {our_calls:>7}")


if __name__ == "__main__":
    main()
