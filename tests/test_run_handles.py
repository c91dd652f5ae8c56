"""Run handles, per-run event streams, re-attaching, and the conversation API.

Everything goes through the public API and the real openai client against
the scripted server; a stalled stream (``Reply.text(..., hold=...)`` or a
``Fault.stall``) keeps a run in flight while the test acts on it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from killed import output_until_killed

from rho_actors import (
    Agent,
    AgentEvent,
    CancellationToken,
    RunHandle,
    Session,
    SessionStore,
    open_supervisor,
    serve_supervisor,
)
from rho_actors.testing import Fault, Reply, ScriptedServer, ToolCallSpec


def _types(events: list[AgentEvent]) -> list[str]:
    return [e.type for e in events]


async def _collect(stream: object) -> list[AgentEvent]:
    return [event async for event in stream]  # type: ignore[attr-defined]


async def test_start_returns_a_handle_that_ends_with_the_result(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.text("All done."))
    session = Session(make_agent())
    handle = await session.start("go")
    assert isinstance(handle, RunHandle)
    assert handle.status in ("queued", "running")
    assert not handle.done()
    result = await handle.wait()
    assert handle.done()
    assert str(handle.status) == "completed"
    assert result.text == "All done."
    assert result.run_id == handle.id
    events = await _collect(handle.events())
    # Replayed whole after the end, numbered, with run_end last.
    assert events[-1].type == "run_end"
    assert events[-1].result is result
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert "".join(e.content or "" for e in events if e.type == "text") == "All done."


async def test_events_follow_live_and_resume_after_a_seq(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """A reader that joins mid-run replays what it missed, then follows live."""
    server.add(
        Reply.tool_call("read", {"path": "missing.txt"}),
        Fault.stall(after_chunks=2),  # holds the second model call open
    )
    server.add(Reply.text("unused"))
    session = Session(make_agent(stream_idle_timeout=60.0))
    handle = await session.start("look")
    seen: list[AgentEvent] = []
    async with trio.open_nursery() as nursery:

        async def read_some() -> None:
            async for event in handle.events():
                seen.append(event)
                if event.type == "tool_end":
                    return

        nursery.start_soon(read_some)
    # The tool ran; the next model call is stalled. A second reader resumes
    # after the last seq the first one saw and gets only what follows.
    late = handle.events(after_seq=seen[-1].seq or 0)
    handle.cancel("enough")
    rest = await _collect(late)
    assert rest[-1].type == "run_end"
    assert rest[-1].result is not None and rest[-1].result.status == "cancelled"
    assert rest[-1].result.cancel_reason == "enough"
    assert all((e.seq or 0) > (seen[-1].seq or 0) for e in rest)
    everything = await _collect(handle.events())
    assert [e.type for e in everything[: len(seen)]] == [e.type for e in seen]
    assert [e.seq for e in everything] == list(range(1, len(everything) + 1))


async def test_two_runs_streams_never_mix(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.default = lambda request: Reply.text("answer to " + request.messages[-1]["content"])
    agent = make_agent()
    async with open_supervisor() as sup:
        first = await sup.dispatch(agent, "one")
        second = await sup.dispatch(agent, "two")
        one, two = await _collect(first.events()), await _collect(second.events())
    text_one = "".join(e.content or "" for e in one if e.type == "text")
    text_two = "".join(e.content or "" for e in two if e.type == "text")
    assert text_one == "answer to one"
    assert text_two == "answer to two"
    assert first.session_id != second.session_id


async def test_cancel_is_synchronous_and_usable_during_cleanup(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """Cleanup code running under a cancellation cannot await; cancel() needs no await."""
    server.add(Fault.stall(after_chunks=1))
    session = Session(make_agent(stream_idle_timeout=60.0))
    handle = await session.start("long")
    with trio.move_on_after(0.5):
        try:
            await trio.sleep_forever()
        finally:
            handle.cancel("the request handler went away")
    result = await handle.wait()
    assert result.status == "cancelled"
    assert result.cancel_reason == "the request handler went away"
    await server.wait_for_disconnects(1)
    # The session stays usable.
    server.add(Reply.text("fine"))
    assert (await session.run("again")).text == "fine"


async def test_cancelling_a_queued_run_answers_at_once(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Fault.stall(after_chunks=1))
    session = Session(make_agent(stream_idle_timeout=60.0))
    busy = await session.start("first")
    queued = await session.start("second")
    await server.wait_for_requests(1)
    assert queued.status == "queued"
    queued.cancel("not needed")
    with trio.fail_after(2):
        result = await queued.wait()
    assert result.status == "cancelled"
    assert result.cancel_reason == "not needed"
    assert busy.status == "running"
    busy.cancel()
    assert (await busy.wait()).status == "cancelled"
    # The cancelled prompt never reached the model or the history.
    assert [m["content"] for m in session.state.messages if m["role"] == "user"] == ["first"]


async def test_a_token_cancels_a_started_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Fault.stall(after_chunks=1))
    token = CancellationToken()
    handle = await Session(make_agent(stream_idle_timeout=60.0)).start("x", token=token)
    await server.wait_for_requests(1)
    token.cancel("shutting down")
    result = await handle.wait()
    assert (result.status, result.cancel_reason) == ("cancelled", "shutting down")


async def test_run_with_interrupt_cancels_the_run_in_flight_and_runs_next(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Fault.stall(after_chunks=1))
    session = Session(make_agent(stream_idle_timeout=60.0))
    first = await session.start("analyze everything")
    queued = await session.start("queued behind")
    await server.wait_for_requests(1)
    server.add(Reply.text("focused on X"), Reply.text("then the queued one"))
    result = await session.run("focus on X instead", interrupt=True)
    assert result.text == "focused on X"
    first_result = await first.wait()
    assert first_result.status == "cancelled"
    assert first_result.cancel_reason == "interrupted by a new prompt"
    # The interrupting prompt went ahead of the one already queued.
    assert (await queued.wait()).text == "then the queued one"
    users = [m["content"] for m in session.state.messages if m["role"] == "user"]
    assert users == ["analyze everything", "focus on X instead", "queued behind"]


async def test_send_pairs_with_session_events(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.text("noted"))
    session = Session(make_agent())
    stream = session.events()
    handle = await session.send("do this next")
    types: list[str] = []
    async for event in stream:
        types.append(event.type)
        if event.type == "turn_complete":
            break
    stream.close()
    assert "text" in types
    assert (await handle.wait()).text == "noted"


async def test_stream_yields_the_run_and_ends_with_run_end(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.text("streamed answer"))
    session = Session(make_agent())
    events = [event async for event in session.stream("hi")]
    assert events[-1].type == "run_end"
    assert events[-1].result is not None and events[-1].result.text == "streamed answer"
    assert "".join(e.content or "" for e in events if e.type == "text") == "streamed answer"


async def test_leaving_a_stream_block_early_cancels_the_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """The chat policy: the only reader went away, so the run stops."""
    server.add(Reply.text("a long answer " * 50, chunk_size=5, chunk_delay=0.01))
    session = Session(make_agent())
    async with session.stream("talk") as events:
        async for event in events:
            if event.type == "text":
                break
    handle = events.handle
    assert handle is not None
    result = await handle.wait()
    assert result.status == "cancelled"
    assert result.cancel_reason == "the stream's reader left"


async def test_a_reader_leaving_handle_events_does_not_stop_the_run(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """The jobs policy: the run goes on, and a new reader re-attaches by id."""
    server.add(Reply.text("a long answer " * 20, chunk_size=5, chunk_delay=0.01))
    session = Session(make_agent())
    handle = await session.start("job")
    last = 0
    async for event in handle.events():
        last = event.seq or 0
        if event.type == "text":
            break  # the client disconnected
    rest = await _collect(session.attach(handle.id, after_seq=last))
    assert rest[0].seq == last + 1
    assert rest[-1].type == "run_end"
    assert rest[-1].result is not None and rest[-1].result.status == "completed"


async def test_attach_replays_a_finished_run_from_the_store(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """After the process that ran it is gone, the run comes back from its trace."""
    store = SessionStore(tmp_path / "sessions")
    server.add(
        Reply.tool_call("write", {"path": "notes.txt", "content": "hello"}),
        Reply.text("Wrote the notes."),
    )
    agent = make_agent()
    async with open_supervisor(store=store) as sup:
        handle = await sup.dispatch(agent, "write notes")
        await handle.wait()
    session_id = handle.session_id
    # A new process: a new store object and a session loaded from it.
    reopened = SessionStore(tmp_path / "sessions").resume(session_id, agent)
    events = await _collect(reopened.attach(handle.id))
    assert _types(events) == ["tool_start", "tool_end", "text", "run_end"]
    assert events[0].tool_name == "write"
    assert events[0].tool_args == {"path": "notes.txt", "content": "hello"}
    assert events[1].tool_name == "write"
    assert events[2].content == "Wrote the notes."
    final = events[-1].result
    assert final is not None
    assert (final.status, final.text, final.turns) == ("completed", "Wrote the notes.", 2)
    tail = await _collect(reopened.attach(handle.id, after_seq=2))
    assert _types(tail) == ["text", "run_end"]
    assert tail[0].seq == 3
    with pytest.raises(Exception, match="no run 'run_nope'"):
        await _collect(reopened.attach("run_nope"))


async def test_attach_from_the_store_follows_a_run_still_going(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """Another process's view: records as they are committed, until the run ends."""
    server.add(
        Reply.tool_call("list", {"path": "."}),
        Reply.text("done listing", first_byte_delay=0.8),
    )
    agent = make_agent()
    store = SessionStore(tmp_path / "sessions")
    async with open_supervisor(store=store) as sup:
        handle = await sup.dispatch(agent, "list")
        await server.wait_for_requests(2)  # the tool ran; the answer is held
        other = SessionStore(tmp_path / "sessions").resume(handle.session_id, agent)
        seen: list[str] = []
        async with trio.open_nursery() as nursery:

            async def follow() -> None:
                async for event in other.attach(handle.id):
                    seen.append(event.type)

            nursery.start_soon(follow)
            await trio.sleep(0.4)
            assert seen == ["tool_start", "tool_end"]
    assert seen == ["tool_start", "tool_end", "text", "run_end"]


async def test_resume_by_session_id_from_another_store_object(
    server: ScriptedServer, make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    location = f"sqlite:{tmp_path / 'sessions.db'}"
    server.add(Reply.text("I will remember 42."))
    agent = make_agent()
    first = SessionStore(location).create_session(agent)
    await first.run("remember 42")
    server.add(Reply.text("You said 42."))
    again = await SessionStore(location).aresume(first.id, agent)
    result = await again.run("what did I say?")
    assert result.text == "You said 42."
    sent = server.chat_requests[-1].messages
    assert {"role": "user", "content": "remember 42"} in sent


async def test_serve_supervisor_starts_in_a_nursery_and_drains_on_aclose(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """aclose(): refuse new work, let a short run finish, cancel a long one at the grace."""
    agent = make_agent(stream_idle_timeout=60.0)
    async with trio.open_nursery() as nursery:
        sup = await nursery.start(functools.partial(serve_supervisor, shutdown_grace=5.0))
        server.add(Fault.stall(after_chunks=1))
        long = await sup.dispatch(agent, "long")
        await server.wait_for_requests(1)
        server.add(Reply.text("quick", first_byte_delay=0.5))
        short = await sup.dispatch(agent, "short")
        await server.wait_for_requests(2)
        assert short.status == "running"
        started = trio.current_time()
        async with trio.open_nursery() as closers:
            closers.start_soon(sup.aclose, 1.0)
            await trio.sleep(0.05)
            with pytest.raises(Exception, match="shutting down"):
                await sup.dispatch(agent, "too late")
        elapsed = trio.current_time() - started
        assert sup.closed
    assert (await short.wait()).status == "completed"
    long_result = await long.wait()
    assert long_result.status == "cancelled"
    assert 0.9 <= elapsed < 3.0
    # The serving task ended by itself: the nursery block above returned.


async def test_a_cancelled_nursery_still_answers_every_handle(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Fault.stall(after_chunks=1))
    agent = make_agent(stream_idle_timeout=60.0)
    with trio.move_on_after(1.0):
        async with trio.open_nursery() as nursery:
            sup = await nursery.start(serve_supervisor)
            handle = await sup.dispatch(agent, "forever")
            await trio.sleep_forever()
    with trio.fail_after(1):
        result = await handle.wait()
    assert result.status == "cancelled"
    events = await _collect(handle.events())
    assert events[-1].type == "run_end"


async def test_dispatch_forgets_its_session_after_the_run_unless_kept(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.default = lambda request: Reply.text("ok")
    agent = make_agent()
    async with open_supervisor() as sup:
        handle = await sup.dispatch(agent, "one")
        await handle.wait()
        with trio.fail_after(2):
            await handle.session.ref.monitor().wait()
        assert handle.session_id not in sup.sessions
        kept = await sup.dispatch(agent, "two", keep_session=True)
        await kept.wait()
        await trio.sleep(0.05)
        assert kept.session_id in sup.sessions
        assert sup.run(handle.id) is handle
        assert {h.id for h in sup.runs} == {handle.id, kept.id}


async def test_tool_call_run_events_carry_call_details(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(
        Reply.tool_calls([ToolCallSpec(name="list", arguments={"path": "."}, id="call_1")]),
        Reply.text("listed"),
    )
    handle = await Session(make_agent()).start("list it")
    events = await _collect(handle.events())
    start = next(e for e in events if e.type == "tool_start")
    end = next(e for e in events if e.type == "tool_end")
    assert (start.tool_call_id, end.tool_call_id) == ("call_1", "call_1")
    assert events[-1].result is not None and events[-1].result.status == "completed"


_KILLED_CHILD = """
import sys, trio
from rho_actors import Agent, AgentConfig, SessionStore, open_supervisor
from rho_actors.testing import Reply, open_scripted_server

async def main():
    async with open_scripted_server() as server:
        server.add(Reply.tool_call("list", {"path": "."}), Reply.text("x", first_byte_delay=3600))
        agent = Agent(AgentConfig(base_url=server.base_url, model="m", working_dir=sys.argv[2]))
        async with open_supervisor(store=SessionStore(sys.argv[1])) as sup:
            handle = await sup.dispatch(agent, "list, then hang")
            await server.wait_for_requests(2)
            await trio.sleep(0.2)
            print(handle.session_id, handle.id, flush=True)
            await trio.sleep_forever()

trio.run(main)
"""


async def test_attach_ends_a_replay_whose_process_was_killed(
    make_agent: Callable[..., Agent], tmp_path: Path
) -> None:
    """kill -9 mid-run: the store replay ends with an interrupted error, not forever."""
    root = tmp_path / "sessions"
    line = await output_until_killed(_KILLED_CHILD, str(root), str(tmp_path))
    session_id, run_id = line.decode().split()
    session = SessionStore(root).resume(session_id, make_agent())
    with trio.fail_after(5):
        events = await _collect(session.attach(run_id))
    assert _types(events) == ["tool_start", "tool_end", "run_end"]
    final = events[-1].result
    assert final is not None and final.status == "error"
    assert final.error is not None and final.error.startswith("interrupted")


async def test_a_raising_on_finish_callback_harms_nothing(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.default = lambda request: Reply.text("ok")
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent())
        handle = await session.start("one")

        def broken(h: RunHandle) -> None:
            raise ZeroDivisionError("a bug in the callback")

        handle.on_finish(broken)
        assert (await handle.wait()).status == "completed"
        assert (await session.run("two")).status == "completed"
        assert sup.restart_count == 0
    assert handle.done()


async def test_an_interrupt_after_a_stop_request_does_not_start(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    server.add(Reply.text("slow", first_byte_delay=0.5))
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent())
        running = await session.start("long")
        await server.wait_for_requests(1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sup.stop_session, session)
            await trio.sleep(0.05)
            late = await session.run("now!", interrupt=True)
        assert late.status == "cancelled"
        assert late.cancel_reason is not None and "stopping" in late.cancel_reason
        assert (await running.wait()).status == "completed"
    assert len(server.chat_requests) == 1
