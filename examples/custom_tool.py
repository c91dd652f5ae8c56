"""A custom tool, offline: a typed ``async def`` becomes a tool the model can call.

Its JSON schema comes from the signature and the docstring; arguments are
validated and coerced before it runs. Run: ``python examples/custom_tool.py``
"""

from __future__ import annotations

import tempfile

import trio

from rho_actors import Agent, AgentConfig, Session
from rho_actors.testing import Reply, open_scripted_server


async def word_count(text: str, unique: bool = False) -> int:
    """Count the words in a text.

    Args:
        text: The text to count.
        unique: Count distinct words only.
    """
    words = text.split()
    return len(set(words)) if unique else len(words)


async def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        async with open_scripted_server() as model:
            model.add(
                Reply.tool_call("word_count", {"text": "to be or not to be", "unique": "true"}),
                Reply.text("There are 4 distinct words."),
            )
            agent = Agent(AgentConfig(base_url=model.base_url, model="scripted", working_dir=work))
            agent.registry.register(word_count)
            result = await Session(agent).run("How many distinct words?")
            sent = model.chat_requests[1].messages[-1]["content"]
            print(f"the tool returned {sent}; the answer: {result.text}")


if __name__ == "__main__":
    trio.run(main)
