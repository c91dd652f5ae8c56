"""Compaction: automatic and manual, durable, safe for tool pairs, cancellable."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from rho_actors import Agent, RhoError, RunResult, Session, SessionStore
from rho_actors._compaction import split_for_compaction
from rho_actors.testing import Fault, RecordedRequest, Reply, ScriptedServer, Usage

BIG = "word " * 400  # about 500 tokens by our estimate


def _is_summary_request(request: RecordedRequest) -> bool:
    return not request.stream


def _summary_then(server: ScriptedServer, text: str = "SUMMARY") -> None:
    """Answer summary (non-streaming) requests with ``text``, others with an echo.

    Reported prompt tokens count message text and the tool schemas, as an
    API does, so the tests control exactly when the threshold is crossed.
    """

    def respond(request: RecordedRequest) -> Reply:
        if _is_summary_request(request):
            return Reply.text(text)
        chars = sum(len(str(m.get("content") or "")) for m in request.messages)
        chars += len(json.dumps(request.tools, separators=(",", ":"))) if request.tools else 0
        tokens = chars // 4
        return Reply.text(
            f"ack {len(request.messages)}",
            usage=Usage(prompt_tokens=tokens, completion_tokens=2),
        )

    server.default = respond


async def _three_turns(server: ScriptedServer, session: Session) -> None:
    """Give the session a history with something old enough to summarise."""
    server.add(Reply.text("a"), Reply.text("b"), Reply.text("c"))
    for prompt in ("one", "two", "three"):
        await session.run(prompt=prompt)


async def test_threshold_crossing_compacts_exactly_once(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Passing the threshold posts one Compact, handled before the next model call
    (here the first call of the third run, whose prompt crosses it)."""
    _summary_then(server)
    session = Session(make_agent(system_prompt="SYSTEM"))
    # The threshold falls 1,400 tokens of conversation past the tool schemas.
    session.context_window = 2000 + int(session.schema_tokens() / session.compact_threshold)
    events: list[str] = []
    for i in range(3):
        await session.run(prompt=f"{i} {BIG}", on_event=lambda e: events.append(e.type))
    summaries = [r for r in server.requests if r.path.endswith("completions") and not r.stream]
    assert len(summaries) == 1
    assert events.count("compact_start") == 1 and events.count("compact_end") == 1
    # The system prompt survived, the summary stands in for the old turns.
    messages = session.state.messages
    assert messages[0] == {"role": "system", "content": "SYSTEM"}
    assert "SUMMARY" in messages[1]["content"]
    assert session.state.compactions == 1
    # The compaction happened before a model call: that call saw the summary.
    after = [r for r in server.chat_requests if r.stream][-1]
    assert any("SUMMARY" in str(m.get("content")) for m in after.messages)


async def test_manual_compaction(server: ScriptedServer, make_agent: Callable[..., Agent]) -> None:
    """session.compact() summarises on demand with the user's instructions."""
    _summary_then(server, "short summary")
    session = Session(make_agent())
    for i in range(4):
        await session.run(prompt=f"message {i}")
    before = session.state.estimate_tokens()
    result = await session.compact("keep the numbers")
    assert result.trigger == "manual" and result.summary == "short summary"
    assert result.tokens_before == before
    summary_request = next(r for r in server.chat_requests if not r.stream)
    assert "keep the numbers" in summary_request.messages[-1]["content"]
    # The two most recent user turns are kept verbatim.
    users = [m["content"] for m in session.state.messages if m["role"] == "user"]
    assert users[-2:] == ["message 2", "message 3"]


async def test_context_length_error_compacts_and_retries_once(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A context-length error triggers one compaction and one retry of the same turn."""
    session = Session(make_agent())
    await _three_turns(server, session)
    server.add(Fault.context_length_exceeded(), Reply.text("SUMMARY"), Reply.text("fits now"))
    result = await session.run(prompt="four")
    assert result.status == "completed" and result.text == "fits now"
    assert session.state.compactions == 1
    assert [e.type for e in result.events].count("compact_end") == 1


async def test_second_context_length_error_ends_the_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Only one retry: a second overflow is reported as an error."""
    session = Session(make_agent())
    await _three_turns(server, session)
    server.add(
        Fault.context_length_exceeded(), Reply.text("SUMMARY"), Fault.context_length_exceeded()
    )
    result = await session.run(prompt="four")
    assert result.status == "error"


async def test_failed_summary_leaves_history_untouched(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """If the summary request fails, history stays exactly as it was and an error is emitted."""
    session = Session(make_agent())
    await _three_turns(server, session)
    before = list(session.state.messages)
    for _ in range(2):  # the same 500 twice: the client stops retrying
        server.add(Fault.server_error(500))
    errors: list[str] = []
    session.events()  # an open stream must not disturb anything
    with pytest.raises(RhoError, match="compaction failed"):
        await session.compact()
    assert session.state.messages == before
    assert session.state.compactions == 0
    # An automatic compaction that fails reports an error event and the run goes on.
    session.context_window = 10
    session._compact_due = "auto"
    for _ in range(2):  # the same 500 twice: the client stops retrying
        server.add(Fault.server_error(500))
    server.add(Reply.text("still answering"))
    result = await session.run(
        prompt="four",
        on_event=lambda e: errors.append(e.content or "") if e.type == "error" else None,
    )
    assert result.text == "still answering"
    assert any("compaction failed" in e for e in errors)
    assert not any("[Summary" in str(m.get("content")) for m in session.state.messages)


async def test_cancel_during_compaction(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A cancel abandons a compaction in progress; history is untouched, the next run works."""
    session = Session(make_agent())
    await _three_turns(server, session)
    before = list(session.state.messages)
    session._compact_due = "auto"
    server.add(Reply.text("never", first_byte_delay=3600))
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await session.run(prompt="four"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        await server.wait_until(lambda: any(not r.stream for r in server.chat_requests))
        await session.cancel("stop compacting")
    assert results[0].status == "cancelled"
    assert session.state.messages[: len(before)] == before
    assert session.state.compactions == 0
    await server.wait_for_disconnects(1)
    server.add(Reply.text("fine"))
    assert (await session.run(prompt="five")).status == "completed"


async def test_resume_after_compaction_restores_compacted_state(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """The trace records the compaction; resume gets the compacted history, not the original."""
    _summary_then(server, "the gist")
    agent = make_agent()
    store = SessionStore(tmp_path / "s")
    session = store.create_session(agent)
    for i in range(4):
        await session.run(prompt=f"m{i}")
    await session.compact()
    usage = dict(session.state.usage)
    resumed = store.resume(session.id, agent)
    assert resumed.state.messages == session.state.messages
    assert any("the gist" in str(m["content"]) for m in resumed.state.messages)
    assert resumed.state.usage == usage and resumed.state.compactions == 1
    assert resumed.state.run_count == 4
    # The original history is still in the trace for audit.
    trace = (tmp_path / "s" / session.id / "trace.jsonl").read_text()
    assert '"content":"m0"' in trace
    server.default = lambda request: Reply.text("continued")
    assert (await resumed.run(prompt="next")).text == "continued"


async def test_compaction_does_not_block_other_sessions(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """While one session waits on a slow summary, another session's run completes."""
    agent = make_agent()
    slow = Session(agent)
    await _three_turns(server, slow)
    server.add(Reply.text("SUMMARY", first_byte_delay=0.5))
    other_done: list[float] = []

    async def other() -> None:
        server.default = lambda request: Reply.text("quick")
        await Session(agent).run(prompt="hi")
        other_done.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(slow.compact)
        await server.wait_until(lambda: any(not r.stream for r in server.chat_requests))
        start = trio.current_time()
        nursery.start_soon(other)
    assert other_done and other_done[0] - start < 0.4


# --- property: cuts never split a tool call from its results ------------------


def _histories() -> st.SearchStrategy[list[dict[str, Any]]]:
    """Random valid chat histories: user turns, assistant text, tool calls with results."""

    @st.composite
    def build(draw: st.DrawFn) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if draw(st.booleans()):
            messages.append({"role": "system", "content": "sys"})
        call_id = 0
        for _ in range(draw(st.integers(0, 8))):
            messages.append({"role": "user", "content": "u"})
            for _ in range(draw(st.integers(0, 3))):
                n_calls = draw(st.integers(1, 3))
                calls = []
                for _ in range(n_calls):
                    call_id += 1
                    calls.append(
                        {
                            "id": f"c{call_id}",
                            "type": "function",
                            "function": {"name": "t", "arguments": "{}"},
                        }
                    )
                messages.append({"role": "assistant", "content": None, "tool_calls": calls})
                for call in calls:
                    messages.append({"role": "tool", "tool_call_id": call["id"], "content": "r"})
            messages.append({"role": "assistant", "content": "a"})
        return messages

    return build()


@settings(max_examples=300, deadline=None)
@given(_histories(), st.integers(0, 4))
def test_split_never_separates_tool_calls_from_results(
    messages: list[dict[str, Any]], keep: int
) -> None:
    """Whatever the history, the kept part is a valid conversation on its own."""
    old, kept = split_for_compaction(messages, keep)
    assert old + kept == [m for m in messages if m["role"] != "system"]
    ids_called = {c["id"] for m in kept for c in m.get("tool_calls") or ()}
    ids_answered = {m["tool_call_id"] for m in kept if m["role"] == "tool"}
    assert ids_called == ids_answered
    if kept:
        assert kept[0]["role"] == "user"
    if old:
        # Something was summarised, so exactly the last `keep` user turns remain.
        users = [m for m in messages if m["role"] == "user"]
        expected = users[-keep:] if keep else []
        assert [m for m in kept if m["role"] == "user"] == expected
    assert all(m["role"] != "system" for m in old + kept)


async def test_after_a_compaction_the_context_counts_the_tool_schemas(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """With no count from the API yet, the estimate adds what every request carries."""
    _summary_then(server, "short summary")
    session = Session(make_agent())
    for i in range(4):
        await session.run(prompt=f"message {i}")
    result = await session.compact()
    schemas = session.schema_tokens()
    specs = server.chat_requests[0].json["tools"]
    assert schemas > 100 and abs(schemas - len(str(specs)) // 4) < schemas // 4
    messages_only = session.state.estimate_tokens()
    assert session.context_tokens() == messages_only + schemas
    assert schemas < result.tokens_after < schemas + messages_only + 20
    # Once the API reports a count again, that count (tools included) is used.
    await session.run(prompt="after")
    assert session.context_tokens() == session.state.estimate_tokens()
