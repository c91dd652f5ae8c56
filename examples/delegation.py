"""Delegation, offline: the agent hands a sub-task to a child session.

The built-in ``delegate`` tool runs the sub-task in a child session on the
same services, with a profile no wider than the parent's; the child's
answer comes back as the tool's result. Run: ``python examples/delegation.py``
"""

from __future__ import annotations

import tempfile

import trio

from rho_actors import Agent, AgentConfig, AgentEvent, Session
from rho_actors.testing import Reply, open_scripted_server


async def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        async with open_scripted_server() as model:
            model.add(
                # The parent delegates; the child answers; the parent concludes.
                Reply.tool_call("delegate", {"prompt": "List the services that failed."}),
                Reply.text("api and worker failed."),
                Reply.text("The child found two failed services: api and worker."),
            )
            agent = Agent(AgentConfig(base_url=model.base_url, model="scripted", working_dir=work))

            def show(event: AgentEvent) -> None:
                if event.type == "tool_end":
                    print(f"  delegate -> {event.tool_result}")

            result = await Session(agent).run("Which services failed?", on_event=show)
            print(result.text)


if __name__ == "__main__":
    trio.run(main)
