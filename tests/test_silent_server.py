"""No run waits forever on a silent model server (autojump clock, real sockets)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from rho_actors import Agent, AgentConfig, ConfigError, Session
from rho_actors.testing import Fault, Reply, ScriptedServer

# Backoff between attempts without a Retry-After: at most 0.5 + 1 + 2 + 4 s.
BACKOFF_TOTAL = 7.5
NEVER = 100_000.0  # a first-byte delay no client waits for


@pytest.fixture
def clock(loopback_autojump_clock: trio.testing.MockClock) -> trio.testing.MockClock:
    return loopback_autojump_clock


async def test_no_response_headers_fails_within_the_retry_budget(
    server: ScriptedServer, make_agent: Callable[..., Agent], clock: trio.testing.MockClock
) -> None:
    """A server that accepts requests and never answers: bounded, retried, named."""
    server.add(*[Reply.text("never sent", first_byte_delay=NEVER) for _ in range(5)])
    started = trio.current_time()
    result = await Session(make_agent()).run("hello?")
    elapsed = trio.current_time() - started
    assert result.status == "error"
    assert "no response from the model endpoint in 60 s" in (result.error or "")
    assert "gave up after 5 attempts" in (result.error or "")
    assert "cannot reach" not in (result.error or "")
    assert len(server.chat_requests) == 5
    assert 5 * 60 <= elapsed <= 5 * 60 + BACKOFF_TOTAL + 1


async def test_one_silent_attempt_is_retried(
    server: ScriptedServer, make_agent: Callable[..., Agent], clock: trio.testing.MockClock
) -> None:
    """The next attempt answers: the run completes after one bounded wait."""
    server.add(Reply.text("never sent", first_byte_delay=NEVER), Reply.text("here I am"))
    started = trio.current_time()
    result = await Session(make_agent()).run("hello?")
    assert result.status == "completed" and result.text == "here I am"
    assert 60 <= trio.current_time() - started <= 60 + 1 + 1


async def test_a_stream_that_stops_mid_answer_fails_without_a_retry(
    server: ScriptedServer, make_agent: Callable[..., Agent], clock: trio.testing.MockClock
) -> None:
    """Text already reached the caller, so the idle stream is an error, not a retry."""
    server.add(Reply.text("a partial answer " * 8, fault=Fault.stall(after_chunks=2)))
    started = trio.current_time()
    result = await Session(make_agent()).run("hello?")
    assert result.status == "error"
    assert "no data from the model endpoint for 300 s mid-stream" in (result.error or "")
    assert len(server.chat_requests) == 1
    assert 300 <= trio.current_time() - started <= 301


@pytest.mark.parametrize("after_chunks", [0, 1])
async def test_a_stream_silent_from_the_start_is_retried(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    clock: trio.testing.MockClock,
    after_chunks: int,
) -> None:
    """Headers (and maybe the role chunk), then nothing: nobody saw anything, so the
    request is retried."""
    server.add(
        Reply.text("lost", fault=Fault.stall(after_chunks=after_chunks)),
        Reply.text("second try"),
    )
    result = await Session(make_agent()).run("hello?")
    assert result.status == "completed" and result.text == "second try"
    assert len(server.chat_requests) == 2


async def test_a_thinking_model_with_keepalives_is_not_cut_off(
    server: ScriptedServer, make_agent: Callable[..., Agent], clock: trio.testing.MockClock
) -> None:
    """Fifteen minutes of thought, with SSE comments as signs of life, is waited for."""
    server.add(Reply.text("a considered answer", think_time=900, keepalive=15))
    started = trio.current_time()
    result = await Session(make_agent()).run("think hard")
    assert result.status == "completed" and result.text == "a considered answer"
    assert len(server.chat_requests) == 1
    assert trio.current_time() - started >= 900


async def test_thinking_longer_than_the_idle_limit_without_keepalives_is_retried(
    server: ScriptedServer, make_agent: Callable[..., Agent], clock: trio.testing.MockClock
) -> None:
    """Total silence past the idle limit ends that attempt; the retry answers."""
    server.add(Reply.text("too late", think_time=900), Reply.text("prompt answer"))
    result = await Session(make_agent()).run("think hard")
    assert result.status == "completed" and result.text == "prompt answer"
    assert len(server.chat_requests) == 2


async def test_limits_are_set_per_agent_and_per_run(
    server: ScriptedServer, make_agent: Callable[..., Agent], clock: trio.testing.MockClock
) -> None:
    """AgentConfig sets the limits; a run's own arguments override them."""
    server.add(Reply.text("x", first_byte_delay=NEVER), Reply.text("done"))
    session = Session(make_agent(response_timeout=10.0))
    started = trio.current_time()
    assert (await session.run("one")).text == "done"
    assert 10 <= trio.current_time() - started <= 12

    server.add(Reply.text("x", first_byte_delay=NEVER), Reply.text("done again"))
    started = trio.current_time()
    assert (await session.run("two", response_timeout=3.0)).text == "done again"
    assert 3 <= trio.current_time() - started <= 5

    server.add(Reply.text("slow", think_time=50), Reply.text("quick"))
    result = await session.run("three", stream_idle_timeout=20.0)
    assert result.text == "quick"


def test_bad_limits_name_the_key() -> None:
    """A limit that is not a positive number is a configuration error naming the key."""
    with pytest.raises(ConfigError, match="stream_idle_timeout"):
        AgentConfig.from_dict({"stream_idle_timeout": "a while"}, source="agent.yaml")
    with pytest.raises(ConfigError, match=r"response_timeout.*positive number"):
        AgentConfig.from_dict({"response_timeout": 0}, source="agent.yaml")
