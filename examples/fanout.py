"""Fan-out with progress, offline: 200 prompts, at most 20 at once.

Run: ``python examples/fanout.py``
"""

from __future__ import annotations

import tempfile

import trio

from rho_actors import Agent, AgentConfig, fan_out
from rho_actors.testing import RecordedRequest, Reply, open_scripted_server


def answer(request: RecordedRequest) -> Reply:
    return Reply.text(f"summary of {request.messages[-1]['content']}", chunk_delay=0.001)


async def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        async with open_scripted_server(default=answer) as model:
            agent = Agent(AgentConfig(base_url=model.base_url, model="scripted", working_dir=work))
            prompts = [f"incident {i}" for i in range(200)]
            done = 0
            async with fan_out(prompts, agent=agent, concurrency=20) as results:
                async for result in results:
                    done += 1
                    if done % 50 == 0:
                        print(f"{done}/{len(prompts)} done (last: {result.status})")
            print("all completed")


if __name__ == "__main__":
    trio.run(main)
