"""rho_actors runs on trio; awaited from asyncio it says so at once (issue 19)."""

from __future__ import annotations

import asyncio

import pytest

from rho_actors import Agent, AgentConfig, RhoError, Session, open_supervisor


def test_a_session_awaited_from_asyncio_says_how_to_run_it() -> None:
    async def main() -> None:
        await Session(Agent(AgentConfig(base_url="http://127.0.0.1:9/v1"))).run("hi")

    with pytest.raises(RhoError, match=r"runs on trio.*trio\.run\(main\).*trio-asyncio"):
        asyncio.run(main())


def test_a_supervisor_opened_from_asyncio_says_so_too() -> None:
    async def main() -> None:
        async with open_supervisor():
            pass

    with pytest.raises(RhoError, match="awaited from asyncio"):
        asyncio.run(main())
