"""Quick start, offline: one agent, one session, a real tool call.

The model is rho_actors' embedded scripted server (no API key): it asks for
the ``read`` tool, then answers. With a real endpoint, drop the server and
set ``base_url``/``OPENAI_API_KEY``. Run: ``python examples/quickstart.py``
"""

from __future__ import annotations

import tempfile

import trio

from rho_actors import Agent, AgentConfig, Session
from rho_actors.testing import Reply, open_scripted_server


async def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        await trio.Path(work, "notes.txt").write_text("deploys happen on Tuesdays\n")
        async with open_scripted_server() as model:
            model.add(
                Reply.tool_call("read", {"path": "notes.txt"}),
                Reply.text("The notes say deploys happen on Tuesdays."),
            )
            agent = Agent(
                AgentConfig(
                    base_url=model.base_url,
                    model="scripted",
                    profile="readonly",
                    working_dir=work,
                    system_prompt="You are a research assistant.",
                )
            )
            session = Session(agent)
            result = await session.run("When do deploys happen?")
            print(result.status, "-", result.text)


if __name__ == "__main__":
    trio.run(main)
