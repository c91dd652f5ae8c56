"""Structured output: the final answer as an attrs class, validated, offline.

The agent asks for a ``Ticket`` (``output_type=Ticket``): the request uses
the provider's json_schema mode; the embedded model's first answer is wrong
on purpose, the run tells it why and the second answer is accepted, then
structured with cattrs into ``result.output``. Against an endpoint without
json_schema support the same code falls back to a ``final_answer`` tool.
Run: ``python examples/structured_output.py``
"""

from __future__ import annotations

import json
import tempfile
from typing import Literal

import attrs
import trio

from rho_actors import Agent, AgentConfig, Session
from rho_actors.testing import Reply, open_scripted_server


@attrs.define
class Ticket:
    title: str
    priority: Literal["low", "high"]
    labels: list[str]


async def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        async with open_scripted_server() as model:
            model.add(
                Reply.text(
                    json.dumps({"title": "Login fails", "priority": "urgent", "labels": []})
                ),
                Reply.text(
                    json.dumps({"title": "Login fails", "priority": "high", "labels": ["auth"]})
                ),
            )
            config = AgentConfig(base_url=model.base_url, model="scripted", working_dir=work)
            session = Session(Agent(config, output_type=Ticket))
            result = await session.run("File a ticket: users cannot log in.")
            feedback = model.chat_requests[1].messages[-1]["content"]
            print("the model was told:", feedback)
            ticket: Ticket = result.output
            print(f"{result.status}: {ticket!r}")


if __name__ == "__main__":
    trio.run(main)
