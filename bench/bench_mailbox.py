"""Mailbox round trips: ``ask`` on a live session actor against a bare channel ping-pong.

* baseline: two trio tasks, a request channel and a reply channel, no actor;
* rho_actors: ``session.ref.ask(...)`` with a ``Reconfigure`` message (the
  cheapest request a session actor answers), each request carrying its own
  reply channel, through the actor's bounded mailbox and ``match`` dispatch.

    python bench/bench_mailbox.py --n 50000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import trio

from rho_actors import Agent, AgentConfig, Reconfigure, open_supervisor

sys.path.insert(0, os.path.dirname(__file__))
from _server import pin_to_core_0


async def bare(n: int) -> float:
    send_req, recv_req = trio.open_memory_channel[Any](64)
    send_rep, recv_rep = trio.open_memory_channel[Any](1)

    async def server() -> None:
        async for message in recv_req:
            await send_rep.send(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = time.perf_counter()
        for i in range(n):
            await send_req.send(i)
            await recv_rep.receive()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel(reason="bench done")
    return n / elapsed


async def actor(n: int) -> float:
    agent = Agent(AgentConfig(model="bench", base_url="http://127.0.0.1:9/v1", profile="readonly"))
    async with open_supervisor() as sup:
        session = await sup.start_session(agent)
        ref = session.ref
        start = time.perf_counter()
        for _ in range(n):
            await ref.ask(lambda reply: Reconfigure(changes={}, reply=reply))
        return n / (time.perf_counter() - start)


async def main(n: int) -> None:
    base = await bare(n)
    ours = await actor(n)
    print(f"ask round trips ({n}):")
    print(f"  bare channel ping-pong     {base:9.0f} /s")
    print(f"  session actor ask          {ours:9.0f} /s   ({ours / base:.2f}x)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=50000)
    pin_to_core_0()
    trio.run(main, parser.parse_args().n)
