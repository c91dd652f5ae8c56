"""MCP tools, offline: an agent uses a tool of a real MCP server (stdio).

The model is rho_actors' embedded scripted server, told to call the MCP
server's ``add`` tool; the MCP server is ``mcp_demo_server.py`` beside this
file, started as a subprocess and stopped when the session ends. Run:

    python examples/mcp_tools.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import trio

from rho_actors import Agent, AgentConfig, Session
from rho_actors.testing import Reply, open_scripted_server

SERVER = Path(__file__).with_name("mcp_demo_server.py")


async def main() -> None:
    async with open_scripted_server() as model:
        # The scripted model asks for the MCP tool, then answers with its result.
        model.add(Reply.tool_call("demo__add", {"a": 19, "b": 23}), Reply.text("19 + 23 = 42"))
        agent = Agent(
            AgentConfig(
                base_url=model.base_url,
                model="scripted",
                working_dir=tempfile.gettempdir(),
                profile="readonly",  # read-only MCP tools only (add is annotated so)
                mcp_servers=[{"name": "demo", "command": sys.executable, "args": [str(SERVER)]}],
            )
        )
        async with Session(agent) as session:
            result = await session.run(
                "What is 19 + 23? Use the tool.",
                on_event=lambda e: (
                    print(f"  {e.tool_name} -> {e.tool_result}") if e.type == "tool_end" else None
                ),
            )
        print(result.text)


if __name__ == "__main__":
    trio.run(main)
