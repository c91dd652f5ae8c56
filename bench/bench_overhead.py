"""Framework overhead without the network: CPU per run through the in-process model.

The model is ``rho_actors.testing.open_in_process_model``: the scripted
server's responses through an httpx2 transport, no sockets. Both sides use
the same transport, so what differs is only what sits around the HTTP call:

* floor: the same requests as plain ``httpx2`` POSTs, each body read line
  by line (no parsing): the transport's and the HTTP client's own cost;
* baseline: a bare ``openai.AsyncOpenAI`` streaming call (read to the end),
  and for a tool-call run two calls around a direct call of the tool;
* rho_actors: a new ``Session`` per run (one shared ``Agent``), run to
  completion: single-turn (one model call), and tool-call (a model call
  asking for a typed ``async def`` tool, the tool, a second model call).

Reported per run: CPU (process time) of each, and rho_actors' overhead over
the floor: everything a run does besides moving the bytes. Runs are
sequential (one at a time), as agno measures its agent runs; N alternating
rounds, medians reported.

    python bench/bench_overhead.py --runs 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import openai
import trio

from rho_actors import Agent, AgentConfig, Session
from rho_actors.testing import InProcessModel, RecordedRequest, Reply, open_in_process_model


async def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: The first.
        b: The second.
    """
    return a + b


def respond(request: RecordedRequest) -> Reply:
    """Asked to add, call the tool; shown its result (or asked anything else), answer."""
    last = request.messages[-1]
    if last.get("role") == "user" and "add" in str(last.get("content")):
        return Reply.tool_call("add", {"a": 2, "b": 3})
    return Reply.text("The answer is 5.")


async def bare_run(client: openai.AsyncOpenAI, tool: bool) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": "add 2 and 3" if tool else "hi"}]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "add",
                "description": "Add two integers.",
                "parameters": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                    "required": ["a", "b"],
                },
            },
        }
    ]
    for _ in range(2 if tool else 1):
        completions: Any = client.chat.completions  # untyped dicts, as a user would pass
        stream = await completions.create(
            model="bench",
            messages=messages,
            tools=tools if tool else openai.omit,
            stream=True,
            stream_options={"include_usage": True},
        )
        calls: list[Any] = []
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.tool_calls:
                calls.extend(chunk.choices[0].delta.tool_calls)
        if not calls:
            return
        result = await add(2, 3)
        messages += [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": calls[0].id,
                        "type": "function",
                        "function": {"name": "add", "arguments": '{"a":2,"b":3}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": calls[0].id, "content": str(result)},
        ]


async def raw_run(http: httpx2.AsyncClient, url: str, tool: bool) -> None:
    """The floor: the same requests as plain POSTs, each SSE body read line by line."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "add 2 and 3" if tool else "hi"}]
    for _ in range(2 if tool else 1):
        body = {"model": "bench", "messages": messages, "stream": True}
        async with http.stream("POST", url, json=body) as response:
            async for _line in response.aiter_lines():
                pass
        if not tool:
            return
        messages = [*messages, {"role": "tool", "tool_call_id": "c", "content": "5"}]
        tool = False


async def cpu_per_run(run: Callable[[], Awaitable[None]], n: int) -> float:
    await run()  # warm: imports, pools, caches
    start = time.process_time()
    for _ in range(n):
        await run()
    return (time.process_time() - start) / n * 1e6


async def measure(model: InProcessModel, work: str, runs: int, rounds: int) -> dict[str, float]:
    client = openai.AsyncOpenAI(
        api_key="sk-bench",
        base_url=model.base_url,
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=model),
    )
    agent = Agent(AgentConfig(base_url=model.base_url, model="bench", working_dir=work))
    agent.registry.register(add)

    async def ours(prompt: str) -> None:
        result = await Session(agent).run(prompt)
        assert result.status == "completed", result.error

    http = httpx2.AsyncClient(transport=model)
    url = model.base_url + "/chat/completions"
    names = ("raw1", "bare1", "ours1", "raw2", "bare2", "ours2")
    figures: dict[str, list[float]] = {k: [] for k in names}
    for _ in range(rounds):
        figures["raw1"].append(await cpu_per_run(lambda: raw_run(http, url, False), runs))
        figures["raw2"].append(await cpu_per_run(lambda: raw_run(http, url, True), runs))
        figures["bare1"].append(await cpu_per_run(lambda: bare_run(client, False), runs))
        figures["ours1"].append(await cpu_per_run(lambda: ours("hi"), runs))
        figures["bare2"].append(await cpu_per_run(lambda: bare_run(client, True), runs))
        figures["ours2"].append(await cpu_per_run(lambda: ours("add 2 and 3"), runs))
    await client.close()
    await http.aclose()
    return {k: statistics.median(v) for k, v in figures.items()}


async def main(runs: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        async with open_in_process_model(default=respond) as model:
            med = await measure(model, work, runs, rounds)
            calls = len(model.chat_requests)
    expected = (runs + 1) * rounds * (1 + 1 + 1 + 2 + 2 + 2)
    assert calls == expected, f"the model saw {calls} calls, expected {expected}"
    print(f"runs={runs} rounds={rounds} (CPU per run, medians; in-process model, no sockets)")
    for label, raw, bare, ours in (
        ("single-turn run", med["raw1"], med["bare1"], med["ours1"]),
        ("tool-call run  ", med["raw2"], med["bare2"], med["ours2"]),
    ):
        print(
            f"  {label}  raw POSTs {raw:7.1f} us   bare openai {bare:7.1f} us ({bare / raw:.2f}x)"
            f"   rho_actors {ours:7.1f} us ({ours / raw:.2f}x)   framework overhead over the raw"
            f" POSTs {ours - raw:7.1f} us"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trio.run(main, args.runs, args.rounds)
