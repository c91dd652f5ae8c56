"""Server dialects and fault variants: the quirks of llama.cpp's server and LiteLLM."""

from __future__ import annotations

import email.utils
import json
import math
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import attrs
import httpx2
import openai
import pytest
import trio
import trio.testing
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from rho_actors.testing import (
    Dialect,
    Fault,
    Reply,
    ScriptedServer,
    ToolCallSpec,
    open_scripted_server,
    serve_scripted,
)

pytest_plugins = ["rho_actors.testing.pytest_plugin"]

# See tests/test_scripted_server.py: openai's AsyncStream leaves its inner
# generators suspended at [DONE] or on an error, which trio reports.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:Async generator '(openai|httpx2|httpcore2)\.[\w.]+' was garbage collected"
    ":ResourceWarning"
)

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def _null_content() -> Any:
    """What many clients send back after a tool call: the assistant turn had no text."""
    return [
        {"role": "user", "content": "read it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "text"},
    ]


@pytest.fixture
async def client(scripted_server: ScriptedServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=scripted_server.base_url, api_key="test-key", max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def http(scripted_server: ScriptedServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=scripted_server.base_url) as http:
        yield http


async def _stream(client: openai.AsyncOpenAI, **extra: Any) -> list[ChatCompletionChunk]:
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True, **extra)
    async with stream:
        return [chunk async for chunk in stream]


def _events(response: httpx2.Response) -> list[Any]:
    """The SSE data payloads of a raw response, decoded, with [DONE] kept as a string."""
    data = [block.removeprefix("data: ") for block in response.text.split("\n\n") if block]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


def _call_deltas(events: list[Any]) -> list[dict[str, Any]]:
    return [
        call
        for event in events
        if isinstance(event, dict) and event["choices"]
        for call in event["choices"][0]["delta"].get("tool_calls", [])
    ]


async def _post(http: httpx2.AsyncClient, **body: Any) -> httpx2.Response:
    return await http.post("/chat/completions", json={"model": "m", "messages": USER, **body})


# -- Dialect -------------------------------------------------------------------


def test_dialect_defaults_and_llama_cpp_preset() -> None:
    """Dialect() is OpenAI's behaviour; the llama.cpp preset turns every quirk on."""
    assert Dialect() == Dialect(repeat_tool_name=False, usage_chunk=True, reject_null_content=False)
    assert Dialect.llama_cpp() == Dialect(
        repeat_tool_name=True, usage_chunk=False, reject_null_content=True
    )
    assert ScriptedServer().dialect == Dialect()
    with pytest.raises(TypeError):
        Dialect(True)  # type: ignore[call-arg]


async def test_default_dialect_is_unchanged(
    scripted_server: ScriptedServer, http: httpx2.AsyncClient
) -> None:
    """By default the name comes once, usage is reported, and null content is accepted."""
    scripted_server.add(
        Reply.tool_call("read", {"path": "a.txt"}, chunk_size=4), Reply.text("x"), Reply.text("y")
    )
    events = _events(await _post(http, stream=True, stream_options={"include_usage": True}))
    deltas = _call_deltas(events)
    assert len(deltas) > 2
    assert deltas[0]["function"] == {"name": "read", "arguments": ""}
    assert all(set(d) == {"index", "function"} and "name" not in d["function"] for d in deltas[1:])
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] > 0
    assert events[-1] == "[DONE]"
    assert "usage" in (await _post(http)).json()
    accepted = await _post(http, messages=_null_content())
    assert accepted.status_code == 200 and scripted_server.pending == 0


async def test_repeat_tool_name_in_every_delta(
    scripted_server: ScriptedServer, http: httpx2.AsyncClient
) -> None:
    """llama.cpp-style deltas each carry the call's id, type and full name."""
    scripted_server.dialect = Dialect(repeat_tool_name=True)
    scripted_server.add(
        Reply.tool_calls(
            [
                ToolCallSpec(name="read", arguments={"path": "a.txt"}, id="call_r"),
                ToolCallSpec(name="bash", arguments={"command": "ls"}),
            ],
            chunk_size=4,
        )
    )
    deltas = _call_deltas(_events(await _post(http, stream=True)))
    assert len(deltas) > 4
    for index, name in enumerate(["read", "bash"]):
        mine = [d for d in deltas if d["index"] == index]
        assert {d["function"]["name"] for d in mine} == {name}
        assert {d["type"] for d in mine} == {"function"} and len({d["id"] for d in mine}) == 1
        arguments = "".join(d["function"]["arguments"] for d in mine)
        assert json.loads(arguments) == [{"path": "a.txt"}, {"command": "ls"}][index]
    assert deltas[0]["id"] == "call_r"


async def test_repeated_names_reach_the_openai_client(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """Through openai, every chunk names the tool: naive concatenation would break."""
    scripted_server.dialect = Dialect(repeat_tool_name=True)
    scripted_server.add(Reply.tool_call("read", {"path": "a.txt"}, chunk_size=4))
    chunks = await _stream(client)
    names = [
        d.function.name
        for c in chunks
        for d in c.choices[0].delta.tool_calls or []
        if d.function is not None
    ]
    assert len(names) > 2 and set(names) == {"read"}


async def test_no_usage_even_when_asked(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI, http: httpx2.AsyncClient
) -> None:
    """Without usage_chunk, include_usage is ignored and a completion has no usage key."""
    scripted_server.dialect = Dialect(usage_chunk=False)
    chunks = await _stream(client, stream_options={"include_usage": True})
    assert chunks and all(c.choices and c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    response = await _post(http)
    assert response.status_code == 200 and "usage" not in response.json()
    assert response.json()["choices"][0]["message"]["content"] == "ok"


async def test_reject_null_content_keeps_the_script(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """A null assistant content gets llama.cpp's 500; it is recorded but consumes no reply."""
    scripted_server.dialect = Dialect(reject_null_content=True)
    scripted_server.add(Reply.text("scripted"))
    messages = _null_content()
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="m", messages=messages, stream=True)
    assert caught.value.status_code == 500
    assert caught.value.body == {
        "code": 500,
        "message": (
            "Failed to parse messages: Invalid 'content' type in messages[1]: "
            "content must be a string or array, got null"
        ),
        "type": "server_error",
    }
    assert scripted_server.pending == 1 and scripted_server.open_streams == 0
    refused = scripted_server.chat_requests[0]
    assert refused.reply is None and refused.messages[1]["content"] is None
    # Leaving the key out, unlike sending null, is fine.
    del messages[1]["content"]
    response = await client.chat.completions.create(model="m", messages=messages)
    assert response.choices[0].message.content == "scripted"


async def test_dialect_can_be_swapped_between_requests(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """server.dialect is read per request, so a test can change servers mid-conversation."""
    messages = _null_content()
    scripted_server.dialect = Dialect.llama_cpp()
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=messages)
    scripted_server.dialect = Dialect()
    response = await client.chat.completions.create(model="m", messages=messages)
    assert response.choices[0].message.content == "ok" and response.usage is not None


async def test_dialect_passes_through_the_factories() -> None:
    """open_scripted_server and serve_scripted hand dialect= to the server."""
    async with open_scripted_server(dialect=Dialect.llama_cpp()) as server:
        assert server.dialect == Dialect.llama_cpp()
    async with trio.open_nursery() as nursery:
        started: ScriptedServer = await nursery.start(
            partial(serve_scripted, dialect=Dialect(usage_chunk=False))
        )
        assert started.dialect == Dialect(usage_chunk=False)
        nursery.cancel_scope.cancel(reason="test done")


# -- rate limits ----------------------------------------------------------------

_RETRY_HEADERS = ("retry-after", "retry-after-ms", "llm_provider-retry-after")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("openai", {"retry-after": "2.5", "retry-after-ms": "2500"}),
        ("seconds", {"retry-after": "2.5"}),
        ("ms", {"retry-after-ms": "2500"}),
        ("litellm", {"llm_provider-retry-after": "2.5"}),
        ("none", {}),
    ],
)
async def test_rate_limit_retry_header_styles(
    scripted_server: ScriptedServer, http: httpx2.AsyncClient, header: Any, expected: Any
) -> None:
    """Each header style sends exactly its own retry hint."""
    fault = Fault.rate_limited(2.5, header=header)
    assert fault.retry_after_header == header and fault.is_http_error
    scripted_server.add(fault)
    response = await _post(http)
    assert response.status_code == 429
    assert {h: response.headers[h] for h in _RETRY_HEADERS if h in response.headers} == expected


async def test_rate_limit_http_date(
    scripted_server: ScriptedServer, http: httpx2.AsyncClient
) -> None:
    """An http-date hint is an IMF-fixdate, the wall clock plus the delay rounded up."""
    scripted_server.add(Fault.rate_limited(2.5, header="http-date"))
    before = time.time()
    response = await _post(http)
    after = time.time()
    value = response.headers["retry-after"]
    assert value.endswith(" GMT") and "retry-after-ms" not in response.headers
    when = email.utils.parsedate_to_datetime(value).timestamp()
    assert math.ceil(before + 2.5) <= when <= math.ceil(after + 2.5)


@pytest.mark.parametrize("header", ["seconds", "http-date"])
async def test_openai_client_honours_the_hint(
    scripted_server: ScriptedServer,
    loopback_autojump_clock: trio.testing.MockClock,
    header: Any,
) -> None:
    """The openai client waits what the hint says before retrying (in virtual time)."""
    scripted_server.add(Fault.rate_limited(20, header=header))
    async with openai.AsyncOpenAI(
        base_url=scripted_server.base_url, api_key="k", max_retries=1
    ) as client:
        start = trio.current_time()
        response = await client.chat.completions.create(model="m", messages=USER)
        elapsed = trio.current_time() - start
    assert response.choices[0].message.content == "ok"
    # An HTTP date has whole seconds and is read against the real clock.
    assert elapsed == pytest.approx(20, abs=1.5)


def test_fault_options_are_validated() -> None:
    """An unknown header or where is refused with the argument and the choices named."""
    with pytest.raises(ValueError, match=r"header must be one of .*'http-date'.*got 'date'"):
        Fault.rate_limited(header="date")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"where must be one of .*'empty-stream'.*got 'body'"):
        Fault.context_length_exceeded(where="body")  # type: ignore[arg-type]


# -- context length ---------------------------------------------------------------


def test_only_status_context_faults_are_http_errors() -> None:
    """is_http_error holds only for the fault that answers with an error status."""
    assert Fault.context_length_exceeded().is_http_error
    assert Fault.context_length_exceeded(where="status").status == 400
    assert not Fault.context_length_exceeded(where="stream-error").is_http_error
    assert not Fault.context_length_exceeded(where="empty-stream").is_http_error


async def test_context_length_as_stream_error(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI, http: httpx2.AsyncClient
) -> None:
    """stream-error: a 200 stream whose only event is the error; openai raises APIError."""
    scripted_server.add(
        Fault.context_length_exceeded(max_tokens=4096, where="stream-error"),
        Fault.context_length_exceeded(where="stream-error"),
    )
    response = await _post(http, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert _events(response) == [
        {
            "error": {
                "message": (
                    "This model's maximum context length is 4096 tokens. However, your "
                    "messages resulted in more tokens. Please reduce the length of the messages."
                ),
                "type": "invalid_request_error",
                "param": None,
                "code": "context_length_exceeded",
            }
        }
    ]
    with pytest.raises(openai.APIError) as caught:
        await _stream(client)
    assert "maximum context length" in caught.value.message
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "context_length_exceeded"
    assert scripted_server.completed_streams == 2 and scripted_server.open_streams == 0


async def test_stream_error_after_chunks(
    scripted_server: ScriptedServer, http: httpx2.AsyncClient
) -> None:
    """With after_chunks the error follows the reply's first events, and no [DONE]."""
    fault = attrs.evolve(Fault.context_length_exceeded(where="stream-error"), after_chunks=2)
    scripted_server.add(Reply.text("abcdef", chunk_size=3, fault=fault))
    events = _events(await _post(http, stream=True))
    assert [e["choices"][0]["delta"] for e in events[:2]] == [
        {"role": "assistant", "content": ""},
        {"content": "abc"},
    ]
    assert events[2]["error"]["code"] == "context_length_exceeded" and len(events) == 3


async def test_stream_error_without_a_stream(
    scripted_server: ScriptedServer, http: httpx2.AsyncClient
) -> None:
    """stream-error on a plain request is a 200 JSON body holding only the error, as LiteLLM."""
    scripted_server.add(Fault.context_length_exceeded(where="stream-error"))
    response = await _post(http)
    assert response.status_code == 200
    assert list(response.json()) == ["error"]
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "context_length_exceeded",
        None,
    )


async def test_context_length_as_empty_stream(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """empty-stream: a role chunk, an empty length-finished chunk, zero completion tokens."""
    scripted_server.add(Fault.context_length_exceeded(where="empty-stream"))
    chunks = await _stream(client, stream_options={"include_usage": True})
    assert len(chunks) == 3
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    final = chunks[1].choices[0]
    assert final.finish_reason == "length" and final.delta.content is None
    assert chunks[2].choices == [] and chunks[2].usage is not None
    assert chunks[2].usage.completion_tokens == 0 and chunks[2].usage.prompt_tokens > 0
    assert scripted_server.requests[0].reply is not None
    assert scripted_server.requests[0].reply.fault is not None


async def test_empty_stream_follows_the_dialect(
    scripted_server: ScriptedServer, http: httpx2.AsyncClient
) -> None:
    """Without usage_chunk the empty stream goes straight from its finish to [DONE]."""
    scripted_server.dialect = Dialect(usage_chunk=False)
    scripted_server.add(Fault.context_length_exceeded(where="empty-stream"))
    events = _events(await _post(http, stream=True, stream_options={"include_usage": True}))
    assert len(events) == 3 and events[-1] == "[DONE]"
    assert events[1]["choices"][0]["finish_reason"] == "length"


async def test_empty_stream_without_a_stream(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """empty-stream on a plain request is an empty completion finished by length."""
    scripted_server.add(Fault.context_length_exceeded(where="empty-stream"))
    response = await client.chat.completions.create(model="m", messages=USER)
    choice = response.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("", "length")
    assert choice.message.tool_calls is None
    assert response.usage is not None and response.usage.completion_tokens == 0


# -- truncated replies -----------------------------------------------------------


async def test_length_finish_reason_streamed_and_not(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """A reply cut by max_tokens reports finish_reason "length" either way."""
    scripted_server.add(
        Reply.text("cut off mid", finish_reason="length"),
        Reply.text("cut off mid", finish_reason="length"),
    )
    chunks = await _stream(client)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "cut off mid"
    assert chunks[-1].choices[0].finish_reason == "length"
    response = await client.chat.completions.create(model="m", messages=USER)
    assert response.choices[0].finish_reason == "length"
    assert response.choices[0].message.content == "cut off mid"


async def test_truncated_arguments_are_sent_verbatim(
    scripted_server: ScriptedServer, client: openai.AsyncOpenAI
) -> None:
    """A raw, unfinished JSON string reaches the client byte for byte, streamed or not."""
    spec = ToolCallSpec(name="read", arguments='{"path": "a')
    scripted_server.add(Reply.tool_calls([spec], chunk_size=3), Reply.tool_calls([spec]))
    chunks = await _stream(client)
    streamed = "".join(
        d.function.arguments or ""
        for c in chunks
        for d in c.choices[0].delta.tool_calls or []
        if d.function is not None
    )
    assert streamed == '{"path": "a'
    response = await client.chat.completions.create(model="m", messages=USER)
    calls = response.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "function"
    assert calls[0].function.arguments == '{"path": "a'


# -- standalone process -----------------------------------------------------------


async def test_standalone_server_llama_cpp_dialect() -> None:
    """`serve --dialect llama.cpp` repeats tool names and reports no usage."""
    command = [sys.executable, "-m", "rho_actors.testing", "serve", "--port", "0"]
    command += ["--dialect", "llama.cpp"]
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
        base_url = line.decode().split()[1]
        async with httpx2.AsyncClient(base_url=base_url) as http:
            body = {"stream": True, "stream_options": {"include_usage": True}}
            events = _events(await _post(http, **body))
        deltas = _call_deltas(events)
        assert len(deltas) > 1 and {d["function"]["name"] for d in deltas} == {"echo"}
        assert not any(isinstance(e, dict) and "usage" in e for e in events)
        await process.stdin.aclose()
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await process.stdin.aclose()
        await process.stdout.aclose()
