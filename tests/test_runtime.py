"""The runtime API of the seed document, cancellation tokens, and telemetry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from rho_actors import (
    Agent,
    CancellationToken,
    RunResult,
    RuntimeOptions,
    TelemetryDB,
    close_runtime,
    create_runtime,
    dispatch_prompt,
    reconfigure_runtime,
    run_prompt,
    start_runtime,
)
from rho_actors.testing import Reply, ScriptedServer, ToolCallSpec, Usage


@pytest.fixture
def options(server: ScriptedServer, tmp_path: Path) -> Callable[..., RuntimeOptions]:
    def make(**fields: Any) -> RuntimeOptions:
        fields.setdefault("base_url", server.base_url)
        fields.setdefault("working_dir", str(tmp_path))
        fields.setdefault("observability_config", str(tmp_path / "telemetry.db"))
        return RuntimeOptions(**fields)

    return make


async def test_seed_basic_usage(
    server: ScriptedServer, options: Callable[..., RuntimeOptions], tmp_path: Path
) -> None:
    """The seed's basic usage runs as written, and telemetry records it."""
    server.add(Reply.text("root causes: none", usage=Usage(prompt_tokens=30, completion_tokens=4)))
    runtime = create_runtime(
        "You are a research assistant.",
        options=options(profile="developer", team_id="acme", project_id="incident-response"),
    )
    await start_runtime(runtime)
    await start_runtime(runtime)  # idempotent
    try:
        result = await run_prompt(runtime, "Analyze recent failures and summarize root causes.")
        assert result.text == "root causes: none"
    finally:
        await close_runtime(runtime, result.status)
    db = TelemetryDB(tmp_path / "telemetry.db")
    totals = db.totals(team_id="acme", project_id="incident-response")
    assert (totals.sessions, totals.runs, totals.turns) == (1, 1, 1)
    assert (totals.input_tokens, totals.output_tokens) == (30, 4)
    assert db.sessions(team_id="acme")[0].status == "completed"
    assert runtime.profile_name == "developer" and runtime.model == "gpt-5-mini"


async def test_seed_dispatch_and_handle(
    server: ScriptedServer, options: Callable[..., RuntimeOptions]
) -> None:
    """dispatch_prompt returns a handle with done(), status, wait() and cancel()."""
    server.add(Reply.text("logs analysed"))
    runtime = create_runtime("You are an analyst.", options=options())
    token = CancellationToken()
    handle = dispatch_prompt(runtime, "analyze the logs", token=token)
    assert not handle.done() and handle.status == "running"
    result = await handle.wait()
    assert handle.done() and result.text == "logs analysed"
    assert str(handle.status) == "completed"


async def test_seed_polling_loop_ends_without_a_nursery(
    server: ScriptedServer,
    options: Callable[..., RuntimeOptions],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """The seed's polling pattern: a dispatch without a nursery starts at once and ends."""
    server.add(Reply.text("polled"))
    runtime = create_runtime("You are an analyst.", options=options())
    handle = dispatch_prompt(runtime, "analyze the logs")
    polls = 0
    while not handle.done():
        await trio.sleep(1)
        polls += 1
    assert polls <= 2 and handle.status == "completed"
    assert (await handle.wait()).text == "polled"


async def test_hosted_work_that_fails_reaches_the_handle_not_trio(
    server: ScriptedServer, options: Callable[..., RuntimeOptions]
) -> None:
    """An error inside a dispatched run is recorded on its handle; trio carries on."""
    runtime = create_runtime("You are an analyst.", options=options())

    def broken_callback(event: object) -> None:
        raise ValueError("the callback broke")

    server.add(Reply.text("x"))
    handle = dispatch_prompt(runtime, "go", on_event=broken_callback)
    result = await handle.wait()
    assert result.status == "error" and "the callback broke" in (result.error or "")
    await runtime.session.close()

    runtime.session.approval_callback = None
    handle = dispatch_prompt(create_runtime(None, options=options(base_url="nope://x")), "go")
    with pytest.raises(Exception, match="base_url"):
        await handle.wait()
    assert handle.status == "error"


async def test_seed_parallel_dispatch_runs_concurrently(
    server: ScriptedServer, options: Callable[..., RuntimeOptions]
) -> None:
    """The seed's parallel pattern (sequential waits) still runs the prompts in parallel."""
    server.default = lambda request: Reply.text("done", first_byte_delay=0.2)
    runtimes, handles = [], []
    for i in range(5):
        rt = create_runtime("You are an analyst.", options=options(profile="readonly"))
        await start_runtime(rt)
        handles.append(dispatch_prompt(rt, f"task {i}"))
        runtimes.append(rt)
    start = trio.current_time()
    results = [await h.wait() for h in handles]
    elapsed = trio.current_time() - start
    for rt, result in zip(runtimes, results, strict=True):
        await close_runtime(rt, result.status)
    assert [r.status for r in results] == ["completed"] * 5
    assert elapsed < 0.2 * 5 * 0.6, f"not parallel: {elapsed:.2f} s"


async def test_dispatch_into_an_explicit_nursery(
    server: ScriptedServer, options: Callable[..., RuntimeOptions]
) -> None:
    """The structured form starts at once in the caller's nursery."""
    server.default = lambda request: Reply.text("ok", first_byte_delay=0.05)
    runtime = create_runtime(None, options=options())
    async with trio.open_nursery() as nursery:
        handle = dispatch_prompt(runtime, "hi", nursery=nursery)
        await server.wait_for_requests(1)
        assert handle.status == "running" and not handle.done()
    assert (await handle.wait()).status == "completed"


async def test_handle_cancel_with_reason(
    server: ScriptedServer, options: Callable[..., RuntimeOptions]
) -> None:
    """handle.cancel(reason) stops a streaming run; the reason is reported."""
    server.add(Reply.text("s" * 400, chunk_size=1, chunk_delay=0.01))
    runtime = create_runtime(None, options=options())
    async with trio.open_nursery() as nursery:
        handle = dispatch_prompt(runtime, "slow", nursery=nursery)
        await server.wait_until(lambda: server.open_streams == 1)
        handle.cancel("timeout exceeded")
    result = await handle.wait()
    assert handle.status == "cancelled"
    assert result.cancel_reason == "timeout exceeded"
    await server.wait_for_disconnects(1)


async def test_one_token_cancels_many_runs(
    server: ScriptedServer, options: Callable[..., RuntimeOptions]
) -> None:
    """A token shared by many runs cancels them all, and later runs start cancelled."""
    server.default = lambda request: Reply.text("x" * 500, chunk_size=1, chunk_delay=0.01)
    token = CancellationToken()
    runtimes = [create_runtime(None, options=options()) for _ in range(4)]
    async with trio.open_nursery() as nursery:
        handles = [dispatch_prompt(rt, "go", token=token, nursery=nursery) for rt in runtimes]
        await server.wait_until(lambda: server.open_streams == 4)
        token.cancel("shutting down")
    assert [h.status for h in handles] == ["cancelled"] * 4
    assert token.is_cancelled() and token.reason == "shutting down"
    await server.wait_for_disconnects(4)
    late = await run_prompt(runtimes[0], "again", token=token)
    assert late.status == "cancelled" and late.cancel_reason == "shutting down"
    assert len(server.chat_requests) == 4  # the late run never called the model


async def test_timeout_seconds_option(
    server: ScriptedServer,
    options: Callable[..., RuntimeOptions],
    loopback_autojump_clock: trio.testing.MockClock,
) -> None:
    """timeout_seconds is a per-run deadline reported as a cancellation."""
    server.add(Reply.text("late", first_byte_delay=120))
    runtime = create_runtime(None, options=options(timeout_seconds=10))
    result = await run_prompt(runtime, "go")
    assert result.status == "cancelled" and result.cancel_reason == "deadline exceeded"


async def test_reconfigure_takes_effect_at_the_next_turn(
    server: ScriptedServer, options: Callable[..., RuntimeOptions], tmp_path: Path
) -> None:
    """Switching to readonly mid-run removes write tools from the very next model call."""
    reconfigured = trio.Event()

    async def probe(text: str) -> str:
        """Probe."""
        reconfigured.set()
        return text

    runtime = create_runtime(None, options=options(profile="developer"))
    runtime.agent.registry.register(probe)
    server.add(
        Reply.tool_calls([ToolCallSpec(name="probe", arguments={"text": "a"})]),
        Reply.text("done"),
    )

    def on_event(event: Any) -> None:
        if event.type == "tool_start":
            new = reconfigure_runtime(runtime, profile="readonly", enable_delegate=False)
            assert new.name == "readonly"

    result = await run_prompt(runtime, "go", on_event=on_event)
    assert result.status == "completed"
    first = {t["function"]["name"] for t in server.chat_requests[0].tools}
    second = {t["function"]["name"] for t in server.chat_requests[1].tools}
    assert {"write", "edit", "delegate"} <= first
    assert "write" not in second and "delegate" not in second and "probe" in second
    assert runtime.profile_name == "readonly"


async def test_max_tool_executions(
    server: ScriptedServer, options: Callable[..., RuntimeOptions]
) -> None:
    """The run stops once it has executed its maximum number of tool calls."""
    runtime = create_runtime(None, options=options(max_tool_executions=2))

    async def tick() -> str:
        """Tick."""
        return "tick"

    runtime.agent.registry.register(tick)
    for _ in range(4):
        server.add(Reply.tool_call("tick", {}))
    result = await run_prompt(runtime, "loop")
    assert result.status == "error"
    assert result.error == "max tool executions (2) reached"
    assert sum(1 for e in result.events if e.type == "tool_end") == 2


async def test_telemetry_totals_match_usage(
    server: ScriptedServer, options: Callable[..., RuntimeOptions], tmp_path: Path
) -> None:
    """Per-project totals in the telemetry DB equal the runs' own usage."""
    usage = Usage(prompt_tokens=100, completion_tokens=10, cached_tokens=20)
    server.default = lambda request: (
        Reply.tool_call("list", {}, usage=usage)
        if request.messages[-1]["role"] == "user"
        else Reply.text("ok", usage=usage)
    )
    results: list[RunResult] = []
    for team in ("a", "a", "b"):
        rt = create_runtime(
            None,
            options=options(
                team_id=team, project_id="p", telemetry_metadata={"job": team, "api_key": "s"}
            ),
        )
        await start_runtime(rt)
        results.append(await run_prompt(rt, "count"))
        await close_runtime(rt, results[-1].status)
    db = TelemetryDB(tmp_path / "telemetry.db")
    team_a = db.totals(team_id="a", project_id="p")
    assert team_a.sessions == 2 and team_a.runs == 2 and team_a.turns == 4
    assert team_a.input_tokens == sum(r.usage["input_tokens"] for r in results[:2]) == 400
    assert team_a.tool_calls == 2
    everything = db.totals(project_id="p")
    assert everything.output_tokens == sum(r.usage["output_tokens"] for r in results)
    assert db.sessions(team_id="b")[0].metadata == {"job": "b", "api_key": "[redacted]"}
    assert db.tool_stats(team_id="a")["list"].calls == 2


async def test_spans_for_runs_model_calls_and_tools(
    server: ScriptedServer, make_agent: Callable[..., Agent]
) -> None:
    """With an OpenTelemetry SDK configured, runs, model calls and tools become spans."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from rho_actors import Session, _tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # The global provider can be set only once per process: stand in for it.
    original = _tracing._trace.get_tracer, _tracing._trace.get_tracer_provider

    def get_tracer(name: str, *args: Any, **kwargs: Any) -> Any:
        return provider.get_tracer(name)

    _tracing._trace.get_tracer = get_tracer
    _tracing._trace.get_tracer_provider = lambda: provider
    try:
        server.add(Reply.tool_call("list", {}), Reply.text("ok"))
        await Session(make_agent()).run(prompt="go")
    finally:
        _tracing._trace.get_tracer, _tracing._trace.get_tracer_provider = original
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("rho_actors.model_call") == 2
    assert names.count("rho_actors.tool_call") == 1
    assert names.count("rho_actors.run") == 1
    run = next(s for s in exporter.get_finished_spans() if s.name == "rho_actors.run")
    assert run.attributes is not None and run.attributes["status"] == "completed"
