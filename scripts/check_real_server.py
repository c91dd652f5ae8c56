"""Run rho_actors' server-compatibility checks against a real OpenAI-compatible server.

Not part of the test suite (it needs a server and, for most, a model): the
suite reproduces each quirk with the scripted server's dialects; this script
checks that what those dialects model is what a real server does. Typical
targets: llama.cpp's server (``pip install 'llama-cpp-python[server]'`` and
``python -m llama_cpp.server --model model.gguf``), vLLM, Ollama, a LiteLLM
proxy in front of any of them.

    python scripts/check_real_server.py --base-url http://localhost:8080/v1 --model local

Each check prints PASS, WARN (the server behaves differently but rho_actors
copes) or FAIL, and the exit status is the number of FAILs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from rho_actors import Agent, AgentConfig, AgentEvent, Session, function_tool

Check = Callable[[Callable[..., Agent]], Awaitable[tuple[str, str]]]


async def plain_answer(make: Callable[..., Agent]) -> tuple[str, str]:
    result = await Session(make()).run("Say hello in five words or fewer.")
    if result.status != "completed" or not result.text.strip():
        return "FAIL", f"status {result.status}: {result.error}"
    return "PASS", repr(result.text[:60])


async def usage_is_real_or_marked(make: Callable[..., Agent]) -> tuple[str, str]:
    result = await Session(make()).run("Reply with the word ok.")
    if result.status != "completed":
        return "FAIL", f"status {result.status}: {result.error}"
    if result.usage.get("calls_without_usage"):
        return "WARN", f"no usage from the server; estimated {result.usage['estimated_tokens']}"
    if not result.usage.get("input_tokens"):
        return "FAIL", f"usage looks like a silent zero: {result.usage}"
    return "PASS", f"input {result.usage['input_tokens']}, output {result.usage['output_tokens']}"


async def tool_round_trip(make: Callable[..., Agent]) -> tuple[str, str]:
    """A tool call assembled from the stream, then a second request carrying it back
    (the assistant message with tool calls and empty content)."""
    seen: list[str] = []

    async def shout(text: str) -> str:
        """Return the text in capital letters."""
        seen.append(text)
        return text.upper()

    agent = make(tool_choice="auto")
    agent.registry.register(function_tool(shout))
    names: list[str] = []

    def on_event(event: AgentEvent) -> None:
        if event.type == "tool_start" and event.tool_name:
            names.append(event.tool_name)

    result = await Session(agent).run(
        "Use the shout tool on the word hello, then tell me what it returned.", on_event=on_event
    )
    if result.status != "completed":
        return "FAIL", f"status {result.status}: {result.error}"
    if not names:
        return "WARN", "the model did not call the tool"
    if any(name != "shout" for name in names):
        return "FAIL", f"tool names assembled wrong: {names}"
    if not seen:
        return "WARN", f"the model called {names} with arguments that did not validate"
    return "PASS", f"shout({seen[0]!r}) -> {result.text[:40]!r}"


async def request_fields_accepted(make: Callable[..., Agent]) -> tuple[str, str]:
    agent = make(max_tokens=64, seed=1, top_p=0.9, stop=["\n\n\n"], temperature=0.2)
    result = await Session(agent).run("Name a colour.")
    if result.status != "completed":
        return "FAIL", f"status {result.status}: {result.error}"
    return "PASS", "max_tokens, seed, top_p, stop, temperature accepted"


async def cut_off_is_surfaced(make: Callable[..., Agent]) -> tuple[str, str]:
    result = await Session(make(max_tokens=5)).run("Count from one to one hundred in words.")
    if result.status != "completed":
        return "FAIL", f"status {result.status}: {result.error}"
    if not result.truncated:
        return "WARN", "the server did not report finish_reason=length for max_tokens=5"
    return "PASS", f"truncated after {result.text[:30]!r}"


CHECKS: dict[str, Check] = {
    "plain answer": plain_answer,
    "usage real or marked unknown": usage_is_real_or_marked,
    "tool round trip": tool_round_trip,
    "request fields": request_fields_accepted,
    "length cut-off": cut_off_is_surfaced,
}


async def main(args: argparse.Namespace) -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as work:

        def make(**fields: Any) -> Agent:
            config = AgentConfig(
                model=args.model,
                base_url=args.base_url,
                profile="readonly",
                working_dir=work,
                api_key=os.environ.get(args.api_key_env) or None,
                response_timeout=args.timeout,
                **fields,
            )
            return Agent(config)

        for name, check in CHECKS.items():
            with trio.move_on_after(args.timeout * 3) as scope:
                verdict, detail = await check(make)
            if scope.cancelled_caught:
                verdict, detail = "FAIL", f"no result within {args.timeout * 3:g} s"
            failures += verdict == "FAIL"
            print(f"{verdict:4}  {name}: {detail}", flush=True)
    return failures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the server's /v1 URL")
    parser.add_argument("--model", required=True, help="the model name the server expects")
    parser.add_argument(
        "--api-key-env", default="OPENAI_API_KEY", help="variable holding the key, if any"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    sys.exit(trio.run(main, parser.parse_args()))
