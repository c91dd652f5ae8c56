"""Seed fidelity and the quirks of servers nobody here wrote (issue 14).

Each quirk is reproduced by the scripted server (a :class:`Dialect` or a
fault option) and driven through a real session and the real ``openai``
client, so what is tested is what a user of llama.cpp's server or a LiteLLM
proxy would see.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from rho_actors import (
    Agent,
    AgentConfig,
    AgentEvent,
    ApprovalInterrupt,
    ConfigError,
    PermissionProfile,
    Session,
    State,
    function_tool,
    load_profile,
)
from rho_actors.testing import (
    Dialect,
    ErrorPlacement,
    Fault,
    RecordedRequest,
    Reply,
    RetryAfterHeader,
    ScriptedServer,
    Usage,
)
from rho_actors.testing._script import ToolCallSpec


def _tool_results(request: RecordedRequest) -> list[str]:
    return [str(m.get("content")) for m in request.messages if m.get("role") == "tool"]


# --- 1, 2: profiles govern custom tools; every result is capped -----------------


async def test_a_tool_the_profile_leaves_out_is_neither_offered_nor_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    ran: list[str] = []

    async def stamp(text: str) -> str:
        """Stamp a document."""
        ran.append(text)
        return "stamped"

    profile = PermissionProfile(name="read-only-tools", tools=["read", "list"])
    agent = make_agent(profile=profile)
    agent.registry.register(function_tool(stamp))
    server.add(Reply.tool_call("stamp", {"text": "x"}), Reply.text("done"))
    result = await Session(agent).run(prompt="stamp it")
    offered = {t["function"]["name"] for t in server.chat_requests[0].tools}
    assert offered == {"read", "list"}
    assert ran == []
    (answer,) = _tool_results(server.chat_requests[1])
    assert "'stamp'" in answer and "disabled" in answer
    assert result.status == "completed"
    # The control: with the tool listed, it is offered and runs.
    listed = PermissionProfile(name="with-stamp", tools=["read", "list", "stamp"])
    agent = make_agent(profile=listed)
    agent.registry.register(function_tool(stamp))
    server.add(Reply.tool_call("stamp", {"text": "y"}), Reply.text("done"))
    await Session(agent).run(prompt="stamp it")
    assert ran == ["y"]


async def test_a_custom_tools_huge_result_is_capped_with_the_total(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    async def dump() -> str:
        """Return a lot."""
        return "A" * 500_000 + "B" * 500_000 + "END"

    profile = attrs_evolve(load_profile("developer"), max_output_chars=2000)
    agent = make_agent(profile=profile)
    agent.registry.register(function_tool(dump))
    server.add(Reply.tool_call("dump", {}), Reply.text("ok"))
    await Session(agent).run(prompt="dump")
    (sent,) = _tool_results(server.chat_requests[1])
    assert len(sent) < 2200
    assert sent.startswith("AAAA") and sent.endswith("BEND")
    assert "[truncated 998003 of 1000003 characters]" in sent


def attrs_evolve(profile: PermissionProfile, **changes: Any) -> PermissionProfile:
    import attrs

    return attrs.evolve(profile, **changes)


# --- 3, 4: float usage, YAML booleans -------------------------------------------


def test_cost_usd_accumulates_as_a_float_and_survives_jsonl(tmp_path: Path) -> None:
    state = State()
    state.update_usage(input=100, output=20, cost_usd=0.01)
    state.update_usage(cost_usd=0.0125)
    assert state.usage["cost_usd"] == pytest.approx(0.0225)
    assert isinstance(state.usage["input_tokens"], int)
    state.to_jsonl(tmp_path / "s.jsonl")
    again = State.from_jsonl(tmp_path / "s.jsonl")
    assert again.usage["cost_usd"] == pytest.approx(0.0225)
    assert again.usage["input_tokens"] == 100 and isinstance(again.usage["input_tokens"], int)


@pytest.mark.parametrize("word", ["off", "no", "false", "Off"])
def test_profile_yaml_takes_unquoted_off(tmp_path: Path, word: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"extends: developer\nfile_write: {word}\nsandbox: {word}\n")
    profile = load_profile(str(path))
    assert profile.file_write == "off" and profile.sandbox == "off"
    path.write_text("extends: developer\nfile_write: yes\n")
    with pytest.raises(ConfigError, match="file_write"):
        load_profile(str(path))


# --- 5: one pause, one interruption -----------------------------------------------


async def test_one_approval_pause_is_one_interruption_event(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    async def launch(target: str) -> str:
        """Launch."""
        return "launched"

    for interrupt in (True, False):
        agent = make_agent(auto_approve=False)
        agent.registry.register(function_tool(launch, requires_approval=True))
        session = Session(agent)
        if interrupt:

            def callback(name: str, args: dict[str, Any]) -> bool:
                raise ApprovalInterrupt()

            session.approval_callback = callback
        server.add(Reply.tool_call("launch", {"target": "x"}))
        events: list[AgentEvent] = []
        result = await session.run(prompt="go", on_event=events.append)
        assert result.status == "paused"
        assert [e.type for e in events].count("interruption") == 1, interrupt


# --- 6: compaction before the first call of a run -------------------------------


async def test_a_prefilled_history_over_the_threshold_is_compacted_first(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    session = Session(make_agent())
    session.context_window = 1000
    for i in range(6):
        session.state.add_user_message(f"old question {i} " + "word " * 200)
        session.state.add_assistant_message(f"old answer {i}")
    server.add(Reply.text("SUMMARY"), Reply.text("fresh answer"))
    result = await session.run(prompt="new question")
    assert result.text == "fresh answer"
    first, second = server.chat_requests
    assert not first.stream  # the summary request came before any model call
    assert any("SUMMARY" in str(m.get("content")) for m in second.messages)


# --- 9, 10: llama.cpp's server -----------------------------------------------------


async def test_llama_cpp_dialect_tool_round_trip(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """Null content would get an HTTP 500 and repeated names would double up: neither."""
    server.dialect = Dialect.llama_cpp()
    (tmp_path / "notes.txt").write_text("hello\n")
    server.add(
        Reply.tool_call("read", {"path": "notes.txt"}, chunk_size=3), Reply.text("it says hello")
    )
    events: list[AgentEvent] = []
    result = await Session(make_agent()).run(prompt="read notes", on_event=events.append)
    assert result.status == "completed", result.error
    assert result.text == "it says hello"
    starts = [e.tool_name for e in events if e.type == "tool_start"]
    assert starts == ["read"]
    sent = server.chat_requests[1].messages
    assistant = next(m for m in sent if m.get("role") == "assistant")
    assert assistant["content"] == ""


async def test_control_null_content_is_what_llama_cpp_rejects(server: ScriptedServer) -> None:
    """The control: the dialect really answers `"content": null` with a 500."""
    import httpx2

    server.dialect = Dialect.llama_cpp()
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": []},
        ],
    }
    async with httpx2.AsyncClient() as client:
        response = await client.post(server.base_url + "/chat/completions", json=body)
    assert response.status_code == 500


# --- 11: usage unknown ---------------------------------------------------------------


async def test_a_stream_without_usage_reports_usage_as_unknown(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.dialect = Dialect(usage_chunk=False)
    server.add(Reply.text("an answer of some length"))
    result = await Session(make_agent()).run(prompt="hello there")
    assert result.usage["calls_without_usage"] == 1
    assert result.usage["estimated_tokens"] > 0
    assert result.usage["input_tokens"] == 0  # no made-up count among the real ones
    server.dialect = Dialect()
    server.add(Reply.text("counted", usage=Usage(prompt_tokens=7, completion_tokens=3)))
    result = await Session(make_agent()).run(prompt="hello")
    assert result.usage["input_tokens"] == 7 and "calls_without_usage" not in result.usage


# --- 12: finish_reason length ----------------------------------------------------------


async def test_a_cut_off_answer_says_so(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.text("The answer is", finish_reason="length"))
    events: list[AgentEvent] = []
    result = await Session(make_agent()).run(prompt="q", on_event=events.append)
    assert result.truncated and result.text == "The answer is"
    (done,) = [e for e in events if e.type == "turn_complete"]
    assert done.finish_reason == "length"
    server.add(Reply.text("whole"))
    assert not (await Session(make_agent()).run(prompt="q")).truncated


async def test_tool_arguments_cut_mid_json_are_a_tool_error(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    cut = Reply.tool_calls([ToolCallSpec(name="read", arguments='{"path": "no')])
    server.add(attrs_evolve_reply(cut, finish_reason="length"), Reply.text("sorry"))
    result = await Session(make_agent()).run(prompt="read")
    assert result.status == "completed"
    (answer,) = _tool_results(server.chat_requests[1])
    assert "JSON" in answer


def attrs_evolve_reply(reply: Reply, **changes: Any) -> Reply:
    import attrs

    return attrs.evolve(reply, **changes)


# --- 13: retry hints as proxies send them ----------------------------------------------


@pytest.mark.parametrize("header", ["seconds", "http-date", "ms", "litellm"])
async def test_retry_hints_in_every_form_are_honoured(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    header: RetryAfterHeader,
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    server.add(Fault.rate_limited(20.0, header=header), Reply.text("after the wait"))
    started = trio.current_time()
    result = await Session(make_agent()).run(prompt="q")
    waited = trio.current_time() - started
    assert result.text == "after the wait"
    # The hint, not the 0.5 s default backoff (an HTTP date is whole seconds).
    assert 18.5 <= waited < 30, waited


# --- 14: a request the server rejects is not retried as if by chance --------------------


async def test_the_same_500_twice_ends_the_retries(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.dialect = Dialect(reject_null_content=True)
    session = Session(make_agent())
    session.state.add_user_message("hi")
    session.state.messages.append({"role": "assistant", "content": None, "tool_calls": []})
    session.state.add_user_message("again")
    # Bypass the encoder's fix to send null content as an older client would.
    session.state._encoded.extend(
        json.dumps(m, separators=(",", ":")).encode() for m in session.state.messages
    )
    result = await session.run(prompt="and now")
    assert result.status == "error"
    assert "gave up after 2 attempts" in (result.error or "")
    assert len(server.chat_requests) == 2


# --- 15: request fields ------------------------------------------------------------------


async def test_request_fields_per_agent_and_per_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    agent = make_agent(
        temperature=0.2,
        max_tokens=300,
        seed=7,
        stop=["END"],
        tool_choice="auto",
        parallel_tool_calls=False,
        top_p=0.9,
        extra_body={"min_p": 0.05},
        extra_headers={"X-Team": "blue"},
    )
    server.add(Reply.text("one"), Reply.text("two"))
    session = Session(agent)
    await session.run(prompt="a")
    await session.run(
        prompt="b", model_options={"temperature": 0.0, "extra_headers": {"X-Run": "2"}}
    )
    first, second = (r.json for r in server.chat_requests)
    assert isinstance(first, dict) and isinstance(second, dict)
    expected = {
        "temperature": 0.2,
        "max_tokens": 300,
        "seed": 7,
        "stop": ["END"],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "top_p": 0.9,
        "min_p": 0.05,
    }
    assert {k: first[k] for k in expected} == expected
    assert second["temperature"] == 0.0 and second["seed"] == 7
    assert server.chat_requests[0].headers["x-team"] == "blue"
    assert server.chat_requests[1].headers["x-run"] == "2"
    assert server.chat_requests[1].headers["x-team"] == "blue"


def test_request_fields_from_yaml_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("max_tokens: 64\nextra_body:\n  top_k: 40\nextra_headers:\n  X-A: b\n")
    config = AgentConfig.from_file(path)
    settings = Agent(config).model_settings()
    assert settings.options == {"max_tokens": 64, "top_k": 40}
    assert settings.extra_headers == {"X-A": "b"}
    path.write_text("max_tokens: lots\n")
    with pytest.raises(ConfigError, match="max_tokens"):
        AgentConfig.from_file(path)
    path.write_text("extra_body:\n  messages: []\n")
    with pytest.raises(ConfigError, match="extra_body"):
        Agent(AgentConfig.from_file(path)).model_settings()


async def test_a_bad_run_option_is_refused_before_the_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    session = Session(make_agent())
    with pytest.raises(ConfigError, match="model_options"):
        await session.run(prompt="a", model_options={"temprature": 1})
    assert server.chat_requests == []


# --- 16: context errors inside a 200 ---------------------------------------------------


@pytest.mark.parametrize("where", ["stream-error", "empty-stream"])
async def test_an_in_stream_context_error_compacts_and_retries(
    server: ScriptedServer, make_agent: Callable[..., Agent], where: ErrorPlacement
) -> None:
    session = Session(make_agent())
    for i in range(4):
        session.state.add_user_message(f"q{i}")
        session.state.add_assistant_message(f"a{i}")
    server.add(
        Fault.context_length_exceeded(where=where),
        Reply.text("SUMMARY"),
        Reply.text("answered after compacting"),
    )
    events: list[str] = []
    result = await session.run(prompt="q", on_event=lambda e: events.append(e.type))
    assert result.text == "answered after compacting", result.error
    assert "compact_end" in events
    assert session.state.compactions == 1
