"""CPU per model call with a long history: our client against a raw HTTP POST.

A 400-message history (~400 KiB of JSON) is sent to the scripted server
(own process, other core) repeatedly. Three ways, same bytes on the wire:

* raw: ``httpx2.AsyncClient.post`` of the pre-built body, response read to
  the end (the floor: HTTP and nothing else);
* rho_actors: ``ModelClient.stream`` with the State's pre-encoded messages;
* openai: ``AsyncOpenAI.chat.completions.create(messages=...)``, whose
  request transform walks the whole history on every call.

    python bench/bench_long_context.py --messages 400 --calls 100

Seven alternating rounds of ``--calls`` calls each; the medians are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

import attrs
import httpx2
import openai
import trio

from rho_actors._llm import ModelClient, ModelSettings, build_body, open_model_clients
from rho_actors._state import State

sys.path.insert(0, os.path.dirname(__file__))
from _server import pin_to_core_0, server_process


def history(n: int) -> State:
    state = State()
    for i in range(n):
        text = f"message {i}: " + "lorem ipsum dolor sit amet " * 37  # ~1 KiB
        if i % 2:
            state.add_assistant_message(text)
        else:
            state.add_user_message(text)
    return state


ROUNDS = 7


async def timed(calls: int, one: Any) -> float:
    await one()  # warm up: connection, caches
    cpu = time.process_time()
    for _ in range(calls):
        await one()
    return (time.process_time() - cpu) / calls * 1000


async def main(n_messages: int, calls: int) -> None:
    state = history(n_messages)
    settings = ModelSettings(model="bench", base_url=None, api_key="bench")
    with server_process("--text-only", "--reply-text", "ok", "--first-byte-ms", "0") as url:
        body = build_body(settings, state.encoded_messages(), None, stream=True)
        async with httpx2.AsyncClient() as http:

            async def raw() -> None:
                async with http.stream(
                    "POST",
                    url + "/chat/completions",
                    content=body,
                    headers={"content-type": "application/json"},
                ) as response:
                    await response.aread()

            async with open_model_clients() as clients:
                client = ModelClient(clients, attrs.evolve(settings, base_url=url))

                async def ours() -> None:
                    await client.stream(state.encoded_messages(), None)

                # Alternating rounds, medians: a round is ~0.1 s of CPU, and
                # this machine's noise is of that order.
                raw_rounds, our_rounds = [], []
                for _ in range(ROUNDS):
                    raw_rounds.append(await timed(calls, raw))
                    our_rounds.append(await timed(calls, ours))
                raw_ms = statistics.median(raw_rounds)
                ours_ms = statistics.median(our_rounds)
        oa = openai.AsyncOpenAI(api_key="bench", base_url=url, max_retries=0)
        messages: Any = state.messages

        async def via_openai() -> None:
            stream = await oa.chat.completions.create(model="bench", messages=messages, stream=True)
            async for _ in stream:
                pass

        openai_ms = await timed(max(10, calls // 5), via_openai)
        await oa.close()
    print(f"{n_messages} messages, {len(body) / 1024:.0f} KiB body, CPU per call:")
    print(f"  raw httpx2 POST            {raw_ms:7.2f} ms")
    print(f"  rho_actors ModelClient     {ours_ms:7.2f} ms   ({ours_ms / raw_ms:.2f}x raw)")
    print(f"  openai create(messages=)   {openai_ms:7.2f} ms   ({openai_ms / raw_ms:.2f}x raw)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    pin_to_core_0()
    trio.run(main, args.messages, args.calls)
