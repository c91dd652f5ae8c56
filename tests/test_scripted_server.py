"""The scripted model server, exercised through the real openai client and raw httpx2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx2
import openai
import pytest
import trio
import trio.testing
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from rho_actors.testing import (
    Fault,
    RecordedRequest,
    Reply,
    ScriptedServer,
    ToolCallSpec,
    Usage,
    benchmark_responder,
    open_scripted_server,
    serve_scripted,
)

pytest_plugins = ["rho_actors.testing.pytest_plugin"]

# openai's AsyncStream leaves its inner SSE/byte generators suspended when it
# stops at "data: [DONE]" (or on an error); under trio each one dropped that
# way triggers a ResourceWarning from trio's async-generator finalizer. That is
# the client's doing, not the server's, so only exactly that warning is allowed.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx2|httpcore2)\.[\w.]+' was garbage collected"
    ":ResourceWarning"
)

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client(scripted_server: ScriptedServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=scripted_server.base_url, api_key="test-key", max_retries=0
    ) as client:
        yield client


async def _stream(client: openai.AsyncOpenAI, **extra: Any) -> list[ChatCompletionChunk]:
    stream = await client.chat.completions.create(
        model="test-model", messages=USER, stream=True, **extra
    )
    async with stream:
        return [chunk async for chunk in stream]


def _text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- replies ------------------------------------------------------------------


async def test_streams_text_in_chunks(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """A text reply streams as a role chunk, content chunks of chunk_size, then finish_reason."""
    scripted_server.add(Reply.text("hello streamed world", chunk_size=4))
    chunks = await _stream(client)
    assert all(c.object == "chat.completion.chunk" and c.model == "test-model" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert contents == ["hell", "o st", "ream", "ed w", "orld"]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert scripted_server.completed_streams == 1 and scripted_server.open_streams == 0


async def test_streams_tool_call_deltas(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """Several tool calls stream as indexed deltas whose argument fragments reassemble."""
    scripted_server.add(
        Reply.tool_calls(
            [
                ToolCallSpec(name="bash", arguments={"command": "ls -la /tmp"}),
                ToolCallSpec(name="read", arguments={"path": "notes.txt"}, id="call_fixed"),
            ],
            text="Let me look.",
            chunk_size=5,
        )
    )
    chunks = await _stream(client)
    calls: dict[int, dict[str, Any]] = {}
    fragments: dict[int, int] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            assert delta.function is not None
            if delta.id is not None:
                assert delta.type == "function"
                call["id"] = delta.id
                call["name"] += delta.function.name or ""
            if delta.function.arguments:
                fragments[delta.index] = fragments.get(delta.index, 0) + 1
                call["arguments"] += delta.function.arguments
    assert _text(chunks) == "Let me look."
    assert [calls[i]["name"] for i in (0, 1)] == ["bash", "read"]
    assert json.loads(calls[0]["arguments"]) == {"command": "ls -la /tmp"}
    assert json.loads(calls[1]["arguments"]) == {"path": "notes.txt"}
    assert calls[1]["id"] == "call_fixed" and calls[0]["id"]
    assert min(fragments.values()) > 1
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_non_streaming_text_with_scripted_usage(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """A non-streaming request gets a chat.completion with the scripted usage."""
    usage = Usage(prompt_tokens=10, completion_tokens=2, cached_tokens=4, reasoning_tokens=1)
    scripted_server.add(Reply.text("hi there", usage=usage))
    response = await client.chat.completions.create(model="test-model", messages=USER)
    assert response.object == "chat.completion"
    assert response.choices[0].message.content == "hi there"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (10, 12)
    assert response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.cached_tokens == 4
    assert response.usage.completion_tokens_details is not None
    assert response.usage.completion_tokens_details.reasoning_tokens == 1


async def test_non_streaming_tool_call_keeps_malformed_arguments(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """Tool calls come back whole, and string arguments are passed through verbatim."""
    scripted_server.add(
        Reply.tool_call("bash", {"command": "ls"}, text="checking"),
        Reply.tool_calls([ToolCallSpec(name="bash", arguments='{"bad json')]),
    )
    first = await client.chat.completions.create(model="m", messages=USER)
    second = await client.chat.completions.create(model="m", messages=USER)
    message = first.choices[0].message
    assert message.content == "checking" and first.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == ("bash", {"command": "ls"})
    assert second.choices[0].message.content is None
    assert second.choices[0].message.tool_calls is not None
    bad = second.choices[0].message.tool_calls[0]
    assert bad.type == "function" and bad.function.arguments == '{"bad json'


async def test_usage_chunk_only_with_include_usage(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """include_usage adds a final chunk with empty choices and estimated usage."""
    scripted_server.add(Reply.text("a" * 40), Reply.text("a" * 40))
    with_usage = await _stream(client, stream_options={"include_usage": True})
    without = await _stream(client)
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    body = scripted_server.requests[0].body
    assert with_usage[-1].usage.prompt_tokens == len(body) // 4
    assert with_usage[-1].usage.completion_tokens == 10
    assert with_usage[-1].usage.total_tokens == len(body) // 4 + 10
    assert all(c.usage is None and c.choices for c in without)


async def test_default_responder_sees_the_request(client: openai.AsyncOpenAI) -> None:
    """Once the script is empty the default responder answers, seeing the recorded request."""
    del client
    seen: list[RecordedRequest] = []

    def respond(request: RecordedRequest) -> Reply:
        seen.append(request)
        return Reply.text(f"echo: {request.messages[-1]['content']}")

    async with (
        open_scripted_server([Reply.text("scripted")], default=respond) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        first = await client.chat.completions.create(model="m", messages=USER)
        second = await client.chat.completions.create(model="m", messages=USER)
    assert first.choices[0].message.content == "scripted"
    assert second.choices[0].message.content == "echo: hi"
    assert seen == [server.requests[1]]


async def test_scripted_server_fixture_defaults_to_ok(client: openai.AsyncOpenAI) -> None:
    """The fixture's server answers "ok" when nothing is scripted."""
    response = await client.chat.completions.create(model="m", messages=USER)
    assert response.choices[0].message.content == "ok"


async def test_script_exhausted_without_default(client: openai.AsyncOpenAI) -> None:
    """With no reply left and no default responder, the request fails with a clear 500."""
    del client
    async with (
        open_scripted_server(default=None) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="m", messages=USER)
    assert caught.value.status_code == 500
    assert "script exhausted" in caught.value.message
    assert caught.value.code == "script_exhausted"


def test_reply_helpers_validate_their_arguments() -> None:
    """Impossible replies and faults are refused when scripted, not when served."""
    with pytest.raises(ValueError, match="chunk_size"):
        Reply.text("x", chunk_size=0)
    with pytest.raises(ValueError, match="first_byte_delay"):
        Reply.text("x", first_byte_delay=-1)
    with pytest.raises(ValueError, match="5xx"):
        Fault.server_error(404)
    with pytest.raises(ValueError, match="at least one"):
        Reply.tool_calls([])


# -- HTTP-level faults ---------------------------------------------------------


async def test_rate_limited_carries_retry_after(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """A 429 reaches the client as RateLimitError with Retry-After headers."""
    scripted_server.add(Fault.rate_limited(retry_after=2.5))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "2.5"
    assert caught.value.response.headers["retry-after-ms"] == "2500"
    assert caught.value.code == "rate_limit_exceeded"
    assert scripted_server.open_streams == 0 and scripted_server.completed_streams == 0


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_error_status(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI, status: int
) -> None:
    """5xx faults surface as InternalServerError with the scripted status."""
    scripted_server.add(Fault.server_error(status))
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="m", messages=USER)
    assert caught.value.status_code == status


async def test_context_length_exceeded(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """The context-length fault is a 400 BadRequestError with OpenAI's code and message."""
    scripted_server.add(Fault.context_length_exceeded())
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length" in caught.value.message
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["type"] == "invalid_request_error"


# -- stream-level faults -------------------------------------------------------


async def test_reset_mid_stream_is_a_connection_error(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """A reset after n chunks surfaces mid-iteration as APIConnectionError from a ReadError."""
    scripted_server.add(Fault.reset_mid_stream(after_chunks=2))
    received: list[ChatCompletionChunk] = []
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    with pytest.raises(openai.APIConnectionError) as caught:
        async with stream:
            async for chunk in stream:
                received.append(chunk)
    assert len(received) == 2
    assert isinstance(caught.value.__cause__, httpx2.ReadError)
    request = scripted_server.requests[0]
    with trio.fail_after(1):
        await request.finished.wait()
    assert not request.completed and not request.disconnected


async def test_reset_before_a_non_streaming_response(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """For a non-streaming request the reset happens before any response byte."""
    scripted_server.add(Fault.reset_mid_stream())
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=USER)


async def test_malformed_chunk_raises_from_iteration(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """A non-JSON data line escapes the openai stream as a bare json.JSONDecodeError."""
    scripted_server.add(Reply.text("abcdefgh", chunk_size=2, fault=Fault.malformed_chunk(2)))
    received: list[ChatCompletionChunk] = []
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    with pytest.raises(json.JSONDecodeError):
        async with stream:
            async for chunk in stream:
                received.append(chunk)
    assert _text(received) == "ab"


async def test_malformed_chunk_then_rest_of_stream_on_the_wire(
    scripted_server: ScriptedServer,
) -> None:
    """On the wire the bad line sits between the scripted chunks, and the stream still ends."""
    scripted_server.add(Reply.text("abcd", chunk_size=2, fault=Fault.malformed_chunk(2)))
    async with httpx2.AsyncClient(base_url=scripted_server.base_url) as http:
        body = {"model": "m", "messages": USER, "stream": True}
        response = await http.post("/chat/completions", json=body)
    lines = [line for line in response.text.split("\n\n") if line]
    assert lines[2] == "data: {not json"
    assert lines[-1] == "data: [DONE]"
    assert response.headers["transfer-encoding"] == "chunked"
    texts = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in lines[3:-2]]
    assert texts == ["cd"]


async def test_stall_until_client_deadline_then_disconnect(
    scripted_server: ScriptedServer,
    client: openai.AsyncOpenAI,
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """A stalled stream holds the client until its deadline; the server then sees it leave."""
    scripted_server.add(Fault.stall(after_chunks=1))
    received: list[ChatCompletionChunk] = []
    start = trio.current_time()
    with trio.move_on_after(30) as scope:
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        async with stream:
            async for chunk in stream:
                received.append(chunk)
    assert scope.cancelled_caught and trio.current_time() - start == pytest.approx(30)
    assert len(received) == 1
    with trio.fail_after(1):
        await scripted_server.wait_for_disconnects(1)
    request = scripted_server.requests[0]
    assert request.disconnected and request.disconnected_event.is_set()
    assert not request.completed
    await scripted_server.wait_for_idle()


async def test_non_streaming_faults_act_before_the_response(
    scripted_server: ScriptedServer,
    client: openai.AsyncOpenAI,
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """Without a stream, a malformed fault is a non-JSON body and a stall hits the read timeout."""
    scripted_server.add(Fault.malformed_chunk(), Fault.stall())
    with pytest.raises(json.JSONDecodeError):
        await client.chat.completions.create(model="m", messages=USER)
    with pytest.raises(openai.APITimeoutError) as caught:
        await client.chat.completions.create(model="m", messages=USER, timeout=5)
    assert isinstance(caught.value.__cause__, httpx2.ReadTimeout)
    with trio.fail_after(1):
        await scripted_server.wait_for_disconnects(1)
    assert scripted_server.requests[1].disconnected


async def test_stall_ends_when_the_server_stops(
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """Stopping the server drops a stalled stream: the client gets a connection error."""
    async with (
        open_scripted_server([Fault.stall(after_chunks=2)]) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
        received = []
        with pytest.raises(openai.APIConnectionError) as caught:
            async with stream:
                async for chunk in stream:
                    received.append(chunk)
                    if len(received) == 2:
                        server.stop()
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert server.disconnects == 0


async def test_client_closing_a_slow_stream_is_observed(
    scripted_server: ScriptedServer,
    client: openai.AsyncOpenAI,
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """Closing a stream part way through marks the request disconnected, without more writes."""
    scripted_server.add(Reply.text("x" * 100, chunk_size=1, chunk_delay=60))
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    async with stream:
        async for chunk in stream:
            if chunk.choices[0].delta.content:
                break
    start = trio.current_time()
    await scripted_server.wait_for_disconnects(1)
    assert trio.current_time() - start < 60  # seen from the socket, not from the next write
    assert scripted_server.open_streams == 0 and scripted_server.completed_streams == 0


async def test_delays_follow_the_clock(
    scripted_server: ScriptedServer,
    client: openai.AsyncOpenAI,
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """first_byte_delay holds the headers back, and chunk_delay spaces out every event."""
    scripted_server.first_byte_delay = 2.0
    scripted_server.chunk_delay = 0.5
    scripted_server.add(Reply.text("abcdefgh", chunk_size=2), Reply.text("z", first_byte_delay=0))
    start = trio.current_time()
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert trio.current_time() - start == pytest.approx(2.0)
    arrivals = []
    async with stream:
        async for _chunk in stream:
            arrivals.append(trio.current_time() - start)
    # role at 2.0, four content chunks and the finish chunk 0.5 s apart.
    assert arrivals == pytest.approx([2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    start = trio.current_time()
    await client.chat.completions.create(model="m", messages=USER)
    assert trio.current_time() - start == pytest.approx(0.0)


# -- HTTP behaviour and recording ------------------------------------------------


async def test_keep_alive_reuses_one_connection(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """Streaming and non-streaming requests from one client share a single connection."""
    await _stream(client)
    await client.chat.completions.create(model="m", messages=USER)
    await _stream(client, stream_options={"include_usage": True})
    await client.models.list()
    assert scripted_server.connections == 1
    assert len(scripted_server.requests) == 4 and len(scripted_server.chat_requests) == 3


async def test_requests_are_recorded(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """Method, path, lower-cased headers and the parsed body of each request are kept."""
    tools: Any = [{"type": "function", "function": {"name": "bash", "parameters": {}}}]
    await client.chat.completions.create(model="gpt-test", messages=USER, tools=tools)
    request = scripted_server.requests[0]
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == "Bearer test-key"
    assert request.headers["content-type"] == "application/json"
    assert request.json["model"] == "gpt-test" and request.model == "gpt-test"
    assert request.messages == [{"role": "user", "content": "hi"}]
    assert request.tools == tools and not request.stream
    assert request.reply == Reply.text("ok") and request.completed
    with trio.fail_after(1):
        await request.finished.wait()
    assert not request.disconnected


async def test_models_and_unknown_routes(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """GET /v1/models lists the models; other routes get OpenAI-style 404/405/400 errors."""
    models = await client.models.list()
    assert [m.id for m in models.data] == ["scripted-model"]
    async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{scripted_server.port}") as http:
        missing = await http.get("/v1/nothing")
        wrong_method = await http.get("/v1/chat/completions")
        not_json = await http.post("/chat/completions", content=b"{oops")
    assert missing.status_code == 404 and "unknown route" in missing.json()["error"]["message"]
    assert wrong_method.status_code == 405
    assert not_json.status_code == 400
    assert scripted_server.pending == 0 and scripted_server.requests[-1].json is None


async def test_serve_scripted_with_nursery_start() -> None:
    """serve_scripted works with nursery.start, which returns the listening server."""
    async with trio.open_nursery() as nursery:
        server: ScriptedServer = await nursery.start(
            partial(serve_scripted, [Reply.text("started")], chunk_size=3)
        )
        async with openai.AsyncOpenAI(
            base_url=server.base_url, api_key="k", max_retries=0
        ) as client:
            chunks = await _stream(client)
        assert _text(chunks) == "started" and len(chunks) == 5
        nursery.cancel_scope.cancel(reason="test done")


async def test_many_concurrent_streams(loopback_autojump_clock: trio.testing.MockClock) -> None:
    """Hundreds of slow streams are served at once, each on its own connection."""
    n = 200
    async with (
        open_scripted_server(chunk_delay=0.1, first_byte_delay=1.0) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        texts: list[str] = []

        async def one() -> None:
            texts.append(_text(await _stream(client)))

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)
            await server.wait_until(lambda: server.open_streams == n)
    assert texts == ["ok"] * n
    assert server.completed_streams == n and server.connections == n


async def test_benchmark_responder_round_trip() -> None:
    """The benchmark responder calls the tool for a user turn and answers a tool result."""
    async with (
        open_scripted_server(default=benchmark_responder(tool_name="lookup")) as server,
        openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as client,
    ):
        first = await client.chat.completions.create(model="m", messages=USER)
        assert first.choices[0].message.tool_calls is not None
        call = first.choices[0].message.tool_calls[0]
        assert call.type == "function"
        assert (call.function.name, json.loads(call.function.arguments)) == (
            "lookup",
            {"text": "hi"},
        )
        history: list[ChatCompletionMessageParam] = [
            *USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": "lookup", "arguments": call.function.arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "found"},
        ]
        second = await client.chat.completions.create(model="m", messages=history)
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls


# -- standalone process -----------------------------------------------------------


@pytest.mark.parametrize("stop", ["stdin", "sigterm"])
async def test_standalone_server_process(stop: str) -> None:
    """`python -m rho_actors.testing serve` announces READY, serves, and stops cleanly."""
    command = [sys.executable, "-m", "rho_actors.testing", "serve", "--port", "0"]
    command += ["--chunk-ms", "1", "--tool-name", "shell"]
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        with trio.fail_after(30):
            line = b""
            while not line.endswith(b"\n"):
                data = await process.stdout.receive_some(1024)
                assert data, "server exited before READY"
                line += data
        word, base_url = line.decode().split()
        assert word == "READY" and base_url.startswith("http://127.0.0.1:")
        async with openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0) as client:
            chunks = await _stream(client)
        names = [
            d.function.name
            for c in chunks
            for d in c.choices[0].delta.tool_calls or []
            if d.function is not None and d.function.name
        ]
        assert names == ["shell"]
        if stop == "stdin":
            await process.stdin.aclose()
        else:
            process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdin.aclose()
        await process.stdout.aclose()
