"""The model client against each fault mode of the scripted server."""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from rho_actors import Agent, Session
from rho_actors._llm import RateGate, _SSEParser, build_body, retry_delay
from rho_actors.testing import Fault, Reply, ScriptedServer, ToolCallSpec, Usage


async def test_429_with_retry_after_is_retried_after_the_wait(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """A 429 is retried after exactly the Retry-After delay, then the run completes."""
    server.add(Fault.rate_limited(retry_after=7), Reply.text("finally"))
    start = trio.current_time()
    result = await Session(make_agent()).run(prompt="hi")
    assert result.status == "completed" and result.text == "finally"
    assert trio.current_time() - start >= 7
    assert len(server.chat_requests) == 2


async def test_5xx_then_success(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """Server errors before the first byte are retried with backoff."""
    server.add(Fault.server_error(503), Fault.server_error(500), Reply.text("up again"))
    result = await Session(make_agent()).run(prompt="hi")
    assert result.text == "up again"
    assert len(server.chat_requests) == 3


async def test_persistent_5xx_ends_the_run_with_an_error(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """After the retry budget, the run reports the HTTP error."""
    for _ in range(10):
        server.add(Fault.server_error(502))
    result = await Session(make_agent()).run(prompt="hi")
    assert result.status == "error"
    assert result.error is not None and "502" in result.error
    assert len(server.chat_requests) == 5  # first try + 4 retries


async def test_reset_mid_stream_is_an_error_not_a_retry(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Once text has streamed, a dropped connection ends the run with an error."""
    server.add(Fault.reset_mid_stream(after_chunks=2), Reply.text("unused"))
    session = Session(make_agent())
    result = await session.run(prompt="hi")
    assert result.status == "error"
    assert result.error is not None and "stream" in result.error
    assert len(server.chat_requests) == 1
    # The session is still usable.
    assert (await session.run(prompt="again")).text == "unused"


async def test_malformed_chunk_is_an_error(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A chunk that is not JSON ends the run with a clear error and closes the stream."""
    server.add(Fault.malformed_chunk(after_chunks=1))
    result = await Session(make_agent()).run(prompt="hi")
    assert result.status == "error"
    assert result.error is not None and "malformed chunk" in result.error


async def test_stall_with_deadline_disconnects(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """A stalled stream is cut by the run's deadline and the server sees the client leave."""
    server.add(Fault.stall(after_chunks=1))
    session = Session(make_agent())
    session.run_timeout = 5
    result = await session.run(prompt="hi")
    assert result.status == "cancelled"
    await server.wait_for_disconnects(1)


async def test_slow_stream_delivers_every_chunk(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """A slow stream with a long first-byte delay still completes intact."""
    text = "slow and steady " * 20
    server.add(Reply.text(text, first_byte_delay=2.0, chunk_delay=0.2, chunk_size=3))
    result = await Session(make_agent()).run(prompt="hi")
    assert result.text == text
    assert sum(1 for e in result.events if e.type == "text") == -(-len(text) // 3)


async def test_usage_accounts_cached_and_reasoning_tokens(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Per-call usage, per-run totals and per-session totals all add up."""
    usage = Usage(prompt_tokens=100, completion_tokens=20, cached_tokens=40, reasoning_tokens=7)
    server.add(
        Reply.tool_call("nope", {}, usage=usage),
        Reply.text("a", usage=usage),
        Reply.text("b", usage=usage),
    )
    session = Session(make_agent())
    first = await session.run(prompt="x")
    calls = [e.usage for e in first.events if e.type == "api_call_complete"]
    assert (
        calls
        == [
            {
                "input_tokens": 100,
                "output_tokens": 20,
                "cached_tokens": 40,
                "reasoning_tokens": 7,
                "total_tokens": 120,
                "api_calls": 1,
            }
        ]
        * 2
    )
    assert first.usage["input_tokens"] == 200 and first.usage["api_calls"] == 2
    second = await session.run(prompt="y")
    assert second.usage["cached_tokens"] == 40
    assert session.state.usage["input_tokens"] == 300
    assert session.state.usage["reasoning_tokens"] == 21


async def test_tool_call_deltas_assembled_by_index(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Several tool calls streamed in small fragments come out whole and in order."""
    agent = make_agent()
    seen: list[str] = []

    async def note(text: str) -> str:
        """Note something."""
        seen.append(text)
        return "noted"

    agent.registry.register(note)
    server.add(
        Reply.tool_calls(
            [ToolCallSpec(name="note", arguments={"text": f"item {i} " * 5}) for i in range(3)],
            chunk_size=3,
        ),
        Reply.text("done"),
    )
    await Session(agent).run(prompt="go")
    assert seen == [f"item {i} " * 5 for i in range(3)]


async def test_rate_gate_is_shared_by_every_run_on_a_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A pause on the gate holds every waiter until it expires."""
    gate = RateGate()
    gate.pause(10)
    woke: list[float] = []

    async def waiter() -> None:
        await gate.wait()
        woke.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(waiter)
        await trio.sleep(5)
        gate.pause(10)  # extended while they wait
    assert len(woke) == 3 and all(t - start >= 15 for t in woke)


async def test_429_pauses_other_sessions_on_the_same_key(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """After one session gets a 429, a second session on the same key waits too."""
    from rho_actors import open_supervisor

    agent = make_agent()
    server.add(Fault.rate_limited(retry_after=30))
    server.default = lambda request: Reply.text("ok")
    async with open_supervisor() as sup:
        a = await sup.start_session(agent)
        b = await sup.start_session(agent)
        await a.run(prompt="first")  # waits out the first 429
        # Now a gets a fresh 429 and b starts one second later, inside a's pause.
        server.add(Fault.rate_limited(retry_after=30))
        times: dict[str, float] = {}

        async def run(name: str, session: Session) -> None:
            await session.run(prompt=name)
            times[name] = trio.current_time()

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "a", a)
            await trio.sleep(1)
            nursery.start_soon(run, "b", b)
        assert times["b"] - start >= 30, "b should have waited for a's Retry-After"


def test_retry_after_parsing() -> None:
    """Retry-After in seconds, in milliseconds, and as an HTTP date are understood."""

    class Exc(Exception):
        def __init__(self, headers: dict[str, str]) -> None:
            self.response = type("R", (), {"headers": headers})()

    assert retry_delay(Exc({"retry-after": "3"}), 0) == 3
    assert retry_delay(Exc({"retry-after-ms": "1500"}), 0) == 1.5
    assert 0 <= retry_delay(Exc({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}), 0) < 1
    assert 0.25 <= retry_delay(Exc({}), 0) <= 0.5


def test_sse_parser_handles_split_lines_and_comments() -> None:
    """Events split across reads and comment lines parse correctly."""
    parser = _SSEParser()
    out = parser.feed(b': keep-alive\n\ndata: {"a"')
    out += parser.feed(b":1}\r\n\r\ndata: [DONE]\n\n")
    assert out == [b'{"a":1}', b"[DONE]"]


def test_body_splices_pre_encoded_messages() -> None:
    """The hand-built body is the same JSON a normal client would send."""
    import json

    from rho_actors._llm import ModelSettings

    settings = ModelSettings(model="m", base_url=None, api_key="k", options={"temperature": 0.5})
    body = build_body(settings, [b'{"role":"user","content":"hi"}'], None, stream=True)
    assert json.loads(body) == {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.5,
        "messages": [{"role": "user", "content": "hi"}],
    }


async def test_agent_create_client_streams_directly(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Agent.create_client() gives a working client that owns and closes its pools."""
    from rho_actors._state import State

    server.add(Reply.text("direct"))
    state = State()
    state.add_user_message("hi")
    async with make_agent().create_client() as client:
        turn = await client.stream(state.encoded_messages(), None)
    assert turn.text == "direct" and turn.finish_reason == "stop"
    assert turn.usage["api_calls"] == 1
