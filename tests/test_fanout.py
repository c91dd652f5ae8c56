"""Fan-out: concurrency limits, streaming results, backpressure, race, cancel-the-rest."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import trio

from rho_actors import Agent, CancellationToken, Job, JobResult, fan_out, race
from rho_actors.testing import RecordedRequest, Reply, ScriptedServer


def _tracking(server: ScriptedServer, delay: float = 0.02) -> list[int]:
    """Make the server slow and record the peak number of open streams."""
    peak = [0]

    def respond(request: RecordedRequest) -> Reply:
        peak[0] = max(peak[0], server.open_streams + 1)
        return Reply.text(f"re: {request.messages[-1]['content']}", first_byte_delay=delay)

    server.default = respond
    return peak


async def test_concurrency_limit_is_honoured_exactly(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Never more than `concurrency` runs at once, and exactly that many when busy."""
    peak = _tracking(server)
    seen: list[JobResult] = []
    async with fan_out([f"p{i}" for i in range(40)], agent=make_agent(), concurrency=7) as results:
        async for done in results:
            seen.append(done)
    assert peak[0] == 7
    assert sorted(d.index for d in seen) == list(range(40))
    assert all(d.status == "completed" for d in seen)
    assert {d.result.text for d in seen if d.result} == {f"re: p{i}" for i in range(40)}
    assert len(server.chat_requests) == 40


async def test_results_stream_in_completion_order(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A fast job's result arrives before a slow one's, whatever the order given."""
    server.default = lambda request: Reply.text(
        "done", first_byte_delay=0.3 if request.messages[-1]["content"] == "slow" else 0.0
    )
    async with fan_out(["slow", "fast"], agent=make_agent(), concurrency=2) as results:
        order = [done.key async for done in results]
    assert order == [1, 0]


async def test_jobs_may_carry_their_own_agents(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Many agents: each job can bring its own agent and key."""
    server.default = lambda request: Reply.text(request.messages[0]["content"])
    jobs = [
        Job(prompt="q", agent=make_agent(system_prompt=f"agent {i}"), key=f"k{i}") for i in range(3)
    ]
    async with fan_out(jobs, concurrency=3) as results:
        texts = {done.key: done.result.text async for done in results if done.result}
    assert texts == {"k0": "agent 0", "k1": "agent 1", "k2": "agent 2"}


async def test_a_slow_consumer_holds_back_new_jobs(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Backpressure: jobs are pulled from the iterable only as results are taken."""
    server.default = lambda request: Reply.text("ok")
    pulled: list[int] = []

    def jobs() -> Iterator[str]:
        for i in range(100):
            pulled.append(i)
            yield f"p{i}"

    async with fan_out(jobs(), agent=make_agent(), concurrency=2) as results:
        first = await results.receive()
        await trio.sleep(0.2)
        # 2 in the result buffer + 2 holding their slots, plus the one taken.
        assert len(pulled) <= 6, pulled
        assert first.status == "completed"


async def test_leaving_early_cancels_the_rest(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Breaking out of the loop cancels running jobs and closes their streams."""
    server.default = lambda request: (
        Reply.text("quick")
        if request.messages[-1]["content"] == "p0"
        else Reply.text("z" * 300, chunk_size=1, chunk_delay=0.01)
    )
    async with fan_out([f"p{i}" for i in range(5)], agent=make_agent(), concurrency=5) as results:
        async for done in results:
            assert done.result is not None and done.result.text == "quick"
            await server.wait_until(lambda: server.open_streams == 4)
            break
    with trio.fail_after(2):
        await server.wait_for_disconnects(4)


async def test_race_returns_the_first_and_cancels_the_others(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """race() gives the first completed run; the losers are cancelled."""
    server.default = lambda request: Reply.text(
        request.messages[-1]["content"],
        first_byte_delay=0.0 if request.messages[-1]["content"] == "winner" else 10.0,
    )
    winner = await race(["slow-1", "winner", "slow-2"], agent=make_agent())
    assert winner.key == 1 and winner.result is not None and winner.result.text == "winner"
    # Every loser whose request reached the server was disconnected; a loser
    # can also be cancelled before its request got there at all.
    losers = [r for r in server.chat_requests if r.messages[-1]["content"] != "winner"]
    with trio.fail_after(2):
        await server.wait_until(
            lambda: server.open_streams == 0 and all(r.disconnected for r in losers)
        )
    assert len(server.chat_requests) == len(losers) + 1


async def test_token_cancels_a_whole_fan_out(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A cancellation token passed to fan_out cancels the running jobs and takes no more."""
    server.default = lambda request: Reply.text("w" * 300, chunk_size=1, chunk_delay=0.01)
    token = CancellationToken()
    statuses: list[str] = []
    async with fan_out(
        [f"p{i}" for i in range(6)], agent=make_agent(), concurrency=3, token=token
    ) as results:
        await server.wait_until(lambda: server.open_streams == 3)
        token.cancel("stop all")
        async for done in results:
            statuses.append(done.status)
    # The three in flight end cancelled; the other three were never taken.
    assert statuses == ["cancelled"] * 3
    assert len(server.chat_requests) == 3
