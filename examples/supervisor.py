"""Many sessions under one supervisor, persisted and replayed, offline.

Fifty sessions run at once under ``open_supervisor`` (one Registry, one Store,
shared connection pools); their traces go to a store in a temporary
directory, and one of them is resumed from it afterwards.
Run: ``python examples/supervisor.py``
"""

from __future__ import annotations

import tempfile

import trio

from rho_actors import Agent, AgentConfig, SessionStore, open_supervisor
from rho_actors.testing import RecordedRequest, Reply, open_scripted_server


def echo(request: RecordedRequest) -> Reply:
    return Reply.text(f"done: {request.messages[-1]['content']}")


async def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        store = SessionStore(f"{work}/sessions")
        async with open_scripted_server(default=echo) as model:
            agent = Agent(AgentConfig(base_url=model.base_url, model="scripted", working_dir=work))
            async with open_supervisor(store=store) as supervisor:
                sessions = [await supervisor.start_session(agent) for _ in range(50)]
                async with trio.open_nursery() as nursery:
                    for i, session in enumerate(sessions):
                        nursery.start_soon(session.run, f"task {i}")
            print(f"{len(store.list())} sessions persisted")
            again = store.resume(sessions[7].id, agent)
            print("resumed:", again.state.messages[-1]["content"])


if __name__ == "__main__":
    trio.run(main)
