"""Structured output: output_type on the agent or per run, both request modes, retries."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Literal, TypedDict

import attrs
import pytest

from rho_actors import Agent, AgentConfig, ApprovalInterrupt, ConfigError, Session, function_tool
from rho_actors.testing import Dialect, Reply, ScriptedServer, ToolCallSpec


@attrs.define
class Address:
    city: str
    zip_code: str | None = None


@attrs.define
class Person:
    name: str
    age: int
    tags: list[str]
    address: Address


@dataclasses.dataclass
class Verdict:
    label: Literal["spam", "ham"]
    confidence: float


class Point(TypedDict):
    x: int
    y: int


PERSON = {
    "name": "Ada",
    "age": 36,
    "tags": ["math"],
    "address": {"city": "London", "zip_code": None},
}


def _agent(make_agent: Callable[..., Agent], **options: object) -> Agent:
    return Agent(make_agent().config, **options)  # type: ignore[arg-type]


async def test_attrs_output_uses_the_json_schema_mode(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.text(json.dumps(PERSON)))
    result = await Session(_agent(make_agent, output_type=Person)).run("who?")
    assert result.status == "completed"
    assert result.output == Person("Ada", 36, ["math"], Address("London", None))
    requested = server.chat_requests[0].json["response_format"]
    assert requested["type"] == "json_schema"
    schema = requested["json_schema"]["schema"]
    assert requested["json_schema"]["name"] == "Person"
    assert schema["required"] == ["name", "age", "tags", "address"]
    assert schema["properties"]["address"]["required"] == ["city"]
    # An optional field makes the schema non-strict (OpenAI's strict mode needs all).
    assert requested["json_schema"]["strict"] is False


@pytest.mark.parametrize(
    ("output_type", "answer", "expected"),
    [
        (Verdict, {"label": "spam", "confidence": 0.9}, Verdict("spam", 0.9)),
        (Point, {"x": 1, "y": 2}, {"x": 1, "y": 2}),
        (
            {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
            {"n": 3},
            {"n": 3},
        ),
        (list[int], [1, 2, 3], [1, 2, 3]),
    ],
)
async def test_dataclass_typeddict_schema_and_plain_types(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    output_type: object,
    answer: object,
    expected: object,
) -> None:
    server.add(Reply.text("```json\n" + json.dumps(answer) + "\n```"))
    result = await Session(make_agent()).run("answer", output_type=output_type)
    assert result.status == "completed", result.error
    assert result.output == expected


async def test_an_invalid_answer_is_fed_back_and_corrected(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    bad = dict(PERSON, age="thirty-six")
    server.add(Reply.text(json.dumps(bad)), Reply.text(json.dumps(PERSON)))
    result = await Session(_agent(make_agent, output_type=Person)).run("who?")
    assert result.status == "completed"
    assert result.output.age == 36
    feedback = server.chat_requests[1].messages[-1]
    assert feedback["role"] == "user"
    assert "age: 'thirty-six' is not of type 'integer'" in feedback["content"]


async def test_retries_are_bounded_with_a_clear_error(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.default = lambda request: Reply.text("not json at all")
    agent = _agent(make_agent, output_type=Person, output_retries=1)
    result = await Session(agent).run("who?")
    assert result.status == "error"
    assert result.error is not None
    assert "did not match the output type after 2 attempts" in result.error
    assert "not valid JSON" in result.error
    assert len(server.chat_requests) == 2
    assert result.output is None


async def test_falls_back_to_a_final_answer_tool_when_json_schema_is_refused(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.dialect = Dialect(json_schema=False)
    server.add(Reply.tool_call("final_answer", PERSON))
    agent = _agent(make_agent, output_type=Person)
    session = Session(agent)
    result = await session.run("who?")
    assert result.status == "completed", result.error
    assert result.output.name == "Ada"
    assert any(e.type == "retry" and "final_answer" in (e.content or "") for e in result.events)
    tool_request = server.chat_requests[-1].json
    assert "response_format" not in tool_request
    assert [t["function"]["name"] for t in tool_request["tools"]][-1] == "final_answer"
    # Remembered for the endpoint: the next run asks through the tool at once.
    before = len(server.requests)
    server.add(Reply.tool_call("final_answer", PERSON))
    assert (await session.run("again")).output.age == 36
    assert len(server.requests) == before + 1
    # The history stays valid: every call has its result.
    answered = {m["tool_call_id"] for m in session.state.messages if m["role"] == "tool"}
    calls = [c["id"] for m in session.state.messages for c in m.get("tool_calls") or ()]
    assert set(calls) <= answered


async def test_tool_mode_rejects_a_bad_final_answer_then_accepts(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(
        Reply.tool_call("final_answer", {"label": "maybe", "confidence": 1}),
        Reply.tool_call("final_answer", {"label": "ham", "confidence": 0.5}),
    )
    agent = _agent(make_agent, output_type=Verdict, output_mode="tool")
    result = await Session(agent).run("classify")
    assert result.output == Verdict("ham", 0.5)
    tool_result = server.chat_requests[1].messages[-1]
    assert tool_result["role"] == "tool"
    assert "label: 'maybe' is not one of ['spam', 'ham']" in tool_result["content"]


async def test_tool_mode_runs_other_tools_first(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(
        Reply.tool_call("list", {"path": "."}),
        Reply.tool_call("final_answer", {"x": 1, "y": 2}),
    )
    agent = _agent(make_agent, output_type=Point, output_mode="tool")
    result = await Session(agent).run("where?")
    assert result.output == {"x": 1, "y": 2}
    assert [e.tool_name for e in result.events if e.type == "tool_start"] == [
        "list",
        "final_answer",
    ]


async def test_the_seed_response_format_keeps_working(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}},
                "required": ["ok"],
                "additionalProperties": False,
            },
        },
    }
    server.add(Reply.text('{"ok": true}'))
    result = await Session(make_agent(response_format=response_format)).run("ok?")
    assert server.chat_requests[0].json["response_format"] == response_format
    assert result.output == {"ok": True}
    server.add(Reply.text('{"ok": true}'))
    plain = await Session(make_agent(response_format={"type": "json_object"})).run("json")
    assert plain.output == {"ok": True}


def test_bad_output_types_are_reported_when_the_agent_is_built() -> None:
    config = AgentConfig(base_url="http://127.0.0.1:1", working_dir=".")

    class Opaque:
        pass

    with pytest.raises(ConfigError, match="output_type"):
        Agent(config, output_type=Opaque)
    with pytest.raises(ConfigError, match="not a valid JSON schema"):
        Agent(config, output_type={"type": "no-such-type"})
    with pytest.raises(ConfigError, match="output_mode"):
        Agent(config, output_type=Point, output_mode="magic")  # type: ignore[arg-type]


@attrs.define
class Secretive:
    _token: str
    count: int = 0


async def test_attrs_private_fields_are_named_as_their_constructor_names_them(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.text('{"token": "abc", "count": 2}'))
    result = await Session(make_agent()).run("go", output_type=Secretive)
    assert result.output == Secretive("abc", 2)
    schema = server.chat_requests[0].json["response_format"]["json_schema"]["schema"]
    assert list(schema["properties"]) == ["token", "count"]


async def test_a_paused_turn_holds_the_final_answer_and_resume_keeps_the_type(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """[a call needing approval, final_answer] in one turn: paused, then answered again."""

    async def launch(target: str) -> str:
        """Launch something."""
        return f"launched {target}"

    server.dialect = Dialect(json_schema=False)
    server.add(
        Reply.tool_calls(
            [
                ToolCallSpec(name="launch", arguments={"target": "x"}, id="c1"),
                ToolCallSpec(name="final_answer", arguments={"x": 0, "y": 0}, id="c2"),
            ]
        ),
        Reply.tool_call("final_answer", {"x": 1, "y": 2}),
    )
    agent = make_agent()
    agent.registry.register(function_tool(launch, requires_approval=True))
    session = Session(agent)

    def later(name: str, args: dict[str, object]) -> bool:
        raise ApprovalInterrupt()

    session.approval_callback = later
    paused = await session.run("where?", output_type=Point)
    assert paused.status == "paused"
    held = next(m for m in session.state.messages if m.get("tool_call_id") == "c2")
    assert "not taken yet" in held["content"]
    await session.approve("c1")
    session.approval_callback = None
    result = await session.resume()
    assert result.status == "completed", result.error
    assert result.output == {"x": 1, "y": 2}
    answered = {m["tool_call_id"] for m in session.state.messages if m["role"] == "tool"}
    assert {"c1", "c2"} <= answered
