"""The seed API without a nursery is hosted, not deferred: one ambient host per trio.run."""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from rho_actors import (
    Agent,
    AgentConfig,
    RuntimeOptions,
    Session,
    SessionStore,
    create_runtime,
    dispatch_prompt,
    open_supervisor,
)
from rho_actors.testing import Reply, ScriptedServer, open_scripted_server


async def test_standalone_sessions_share_one_set_of_pools(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Standalone runs one after another reuse the host's keep-alive connection."""
    server.default = lambda request: Reply.text("ok")
    agent = make_agent()
    for i in range(5):
        assert (await Session(agent).run(f"run {i}")).status == "completed"
    assert server.connections == 1


async def test_a_standalone_session_keeps_its_event_stream_between_runs(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Releasing an idle standalone session does not end its open event streams."""
    server.default = lambda request: Reply.text("hello")
    session = Session(make_agent())
    seen: list[str] = []
    async with trio.open_nursery() as nursery, session.events() as stream:

        async def read() -> None:
            async for event in stream:
                if event.type == "turn_complete":
                    seen.append(event.content or "")
                    if len(seen) == 2:
                        return

        nursery.start_soon(read)
        await session.run("one")
        await trio.testing.wait_all_tasks_blocked()
        await session.run("two")
    assert seen == ["hello", "hello"]


async def test_a_resumed_copy_waits_for_the_idle_original(
    server: ScriptedServer, make_agent: Callable[..., Agent], store: SessionStore
) -> None:
    """Two Session objects for one id are never hosted at once (one trace, one writer)."""
    server.default = lambda request: Reply.text("ok")
    agent = make_agent()
    original = store.create_session(agent)
    await original.run("first")
    copy = store.resume(original.id, agent)
    assert (await copy.run("second")).status == "completed"
    prompts = [m["content"] for m in store.load_state(original.id).messages if m["role"] == "user"]
    assert prompts == ["first", "second"]


def test_nothing_outlives_trio_run() -> None:
    """A dispatch still running when main returns is cancelled cleanly; trio.run returns."""
    handles = []

    async def main() -> None:
        async with open_scripted_server() as server:
            server.add(Reply.text("slow", first_byte_delay=3600))
            runtime = create_runtime(
                None, options=RuntimeOptions(base_url=server.base_url, model="m")
            )
            handles.append(dispatch_prompt(runtime, "never finishes"))
            await server.wait_for_requests(1)
            assert handles[0].status == "running"

    trio.run(main)
    [handle] = handles
    assert handle.done() and handle.status in ("cancelled", "error")


def test_hosted_runs_share_pools_across_dispatches() -> None:
    """Dispatches without a nursery run concurrently in one host and share its pools."""

    async def main() -> list[str]:
        async with open_scripted_server() as server:
            server.default = lambda request: Reply.text("done", first_byte_delay=0.1)
            agent = Agent(AgentConfig(base_url=server.base_url, model="m"))
            runtimes = [
                create_runtime(None, session=Session(agent), options=RuntimeOptions())
                for _ in range(20)
            ]
            started = trio.current_time()
            handles = [dispatch_prompt(rt, f"task {i}") for i, rt in enumerate(runtimes)]
            results = [await h.wait() for h in handles]
            assert trio.current_time() - started < 0.1 * 20 / 2  # in parallel
            return [r.status for r in results]

    assert trio.run(main) == ["completed"] * 20


async def test_a_standalone_session_can_move_under_a_supervisor_at_once(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Right after a standalone run, start_session takes the session from the ambient host
    (regression: it used to fail with "session is already being served")."""
    server.default = lambda request: Reply.text("ok")
    async with open_supervisor() as sup:
        for i in range(5):
            session = Session(make_agent())
            assert (await session.run(f"standalone {i}")).status == "completed"
            await sup.start_session(session)
            assert (await session.run(f"supervised {i}")).status == "completed"
            await sup.stop_session(session)
