"""The seed-compatible runtime API, offline: create, start, run, dispatch, close.

Run: ``python examples/runtime_api.py``
"""

from __future__ import annotations

import tempfile

import trio

from rho_actors import (
    RuntimeOptions,
    close_runtime,
    create_runtime,
    dispatch_prompt,
    run_prompt,
    start_runtime,
)
from rho_actors.testing import RecordedRequest, Reply, open_scripted_server


def answer(request: RecordedRequest) -> Reply:
    return Reply.text(f"looked into: {request.messages[-1]['content']}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        async with open_scripted_server(default=answer) as model:
            runtime = create_runtime(
                "You are a research assistant.",
                options=RuntimeOptions(
                    base_url=model.base_url, model="scripted", profile="readonly", working_dir=work
                ),
            )
            await start_runtime(runtime)
            status = "error"
            try:
                result = await run_prompt(runtime, "Analyze recent failures.")
                print("run_prompt:", result.text)
                handle = dispatch_prompt(runtime, "analyze the logs")
                result = await handle.wait()
                print("dispatch_prompt:", handle.status, "-", result.text)
                status = result.status
            finally:
                await close_runtime(runtime, status)


if __name__ == "__main__":
    trio.run(main)
