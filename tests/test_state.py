"""State: the seed members, observers, and exact replay from a trace."""

from __future__ import annotations

from pathlib import Path

import pytest

from rho_actors import State, StoreError
from rho_actors._records import Envelope


def _busy_state() -> State:
    state = State("s1")
    state.add_system_message("sys")
    state.add_user_message("hello")
    state.add_assistant_message(
        "calling", [{"id": "c1", "type": "function", "function": {"name": "t", "arguments": "{}"}}]
    )
    state.add_tool_result("c1", "result")
    state.add_assistant_message("done")
    state.update_usage(input=100, output=50, cached=10)
    state.finish_run(status="completed", usage={"input_tokens": 100})
    return state


def test_seed_members_and_usage() -> None:
    """Messages, usage, status and run_count behave as the seed describes."""
    state = _busy_state()
    assert [m["role"] for m in state.get_messages()] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert state.usage["input_tokens"] == 100
    assert state.usage["output_tokens"] == 50
    assert state.usage["total_tokens"] == 150
    assert state.status == "completed" and state.run_count == 1
    assert state.estimate_tokens() > 0


def test_observers_see_every_record() -> None:
    """An observer receives one record per change, with increasing sequence numbers."""
    state = State()
    seen: list[Envelope] = []
    state.add_observer(seen.append)
    state.add_user_message("a")
    state.update_usage(input=1)
    state.remove_observer(seen.append)
    state.add_user_message("b")
    assert [e.record.type for e in seen] == ["message", "usage"]
    assert [e.seq for e in seen] == [1, 2]


def test_to_jsonl_from_jsonl_round_trip(tmp_path: Path) -> None:
    """A state written with to_jsonl replays to an equal state."""
    state = _busy_state()
    path = tmp_path / "trace.jsonl"
    state.to_jsonl(path)
    restored = State.from_jsonl(path)
    assert restored.messages == state.messages
    assert restored.usage == state.usage
    assert (restored.status, restored.run_count, restored.session_id) == ("completed", 1, "s1")


def test_replay_of_observed_records_rebuilds_state() -> None:
    """Replaying the records an observer saw gives the same state (the resume path)."""
    records: list[Envelope] = []
    state = State("s2")
    state.add_observer(records.append)
    state.start_run("hello")
    state.add_user_message("hello")
    state.add_assistant_message("hi")
    state.update_usage(input=5, output=2)
    state.finish_run(status="completed", usage={})
    state.replace_with_summary("sum", 100, 10, keep=[{"role": "user", "content": "k"}])
    replayed = State.replay(records, "s2")
    assert replayed.messages == state.messages
    assert replayed.usage == state.usage
    assert replayed.run_count == 1 and replayed.compactions == 1


def test_torn_last_line_is_ignored(tmp_path: Path) -> None:
    """A crash mid-write leaves a partial last line, which loading skips."""
    path = tmp_path / "trace.jsonl"
    _busy_state().to_jsonl(path)
    with open(path, "ab") as fh:
        fh.write(b'{"ts": 1, "seq": 99, "type": "message", "mess')
    assert State.from_jsonl(path).run_count == 1


def test_corrupt_middle_line_is_an_error_naming_the_file(tmp_path: Path) -> None:
    """Damage before the end of a trace is reported, never silently skipped."""
    path = tmp_path / "trace.jsonl"
    path.write_bytes(b'{"ts":1,"seq":1,"type":"message","message":{"role":"user"}}\nGARBAGE\n{}\n')
    with pytest.raises(StoreError, match=r"corrupt trace line 2.*trace\.jsonl"):
        State.from_jsonl(path)


def test_dangling_tool_calls_are_closed() -> None:
    """close_dangling_tool_calls answers exactly the unanswered calls."""
    state = State()
    state.add_assistant_message(
        None,
        [
            {"id": "a", "type": "function", "function": {"name": "t", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "t", "arguments": "{}"}},
        ],
    )
    state.add_tool_result("a", "ok")
    assert state.close_dangling_tool_calls("[cancelled]") == 1
    assert state.messages[-1] == {"role": "tool", "tool_call_id": "b", "content": "[cancelled]"}
    assert state.unanswered_tool_calls() == []


def test_encoded_messages_follow_changes() -> None:
    """The request-body cache tracks appends and is rebuilt after a compaction."""
    import json

    state = State()
    state.add_user_message("one")
    assert [json.loads(b) for b in state.encoded_messages()] == state.messages
    state.add_user_message("two")
    assert [json.loads(b) for b in state.encoded_messages()] == state.messages
    state.replace_with_summary("s", 1, 1)
    assert [json.loads(b) for b in state.encoded_messages()] == state.messages
