"""``rho-actors demo``: the runtime's promises, shown offline in a few seconds.

No API key and no network: the model is the scripted server from
``rho_actors.testing``, answering on 127.0.0.1 from this process. Under one
supervisor, at the same time:

* a fan-out of dozens of sessions, each listing a real directory with the
  built-in ``list`` tool and reporting what it found;
* one session whose ``write`` call needs approval (the ``developer``
  profile asks before writes), answered by a scripted callback and shown;
* one session cancelled mid-stream, then used again to show it is intact;
* one session with a tiny context window, so auto-compaction replaces its
  older turns with a model-written summary.

The demo stays scripted even when ``OPENAI_API_KEY`` is set: it is a tour,
not a client. ``rho-actors run`` and ``chat`` talk to real models.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import trio
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._agent import Agent
from .._compaction import SUMMARY_INSTRUCTIONS
from .._config import AgentConfig
from .._events import AgentEvent
from .._fanout import Job, fan_out
from .._session_store import SessionStore
from .._supervisor import Supervisor, open_supervisor
from ..testing import RecordedRequest, Reply, open_scripted_server
from ._common import EXIT_ERROR, EXIT_OK, plural
from ._terminal import format_args, status_style

CANCEL_REASON = "demo: cancelled on purpose"
COMPACTION_PROMPTS = (
    "Remember: the build server is called hydra.",
    "Remember: deployments happen on Tuesdays.",
    "Remember: the on-call engineer is Ana.",
    "Who is on call, and when do we deploy?",
)

BANNER = """\
[bold]The model in this demo is SCRIPTED[/bold]: an OpenAI-compatible server embedded in \
this process (127.0.0.1) answers from a script. No API key, no network, no cost.

To use a real model, use [bold]run[/bold] or [bold]chat[/bold]:
  export OPENAI_API_KEY=sk-...
  rho-actors run --model gpt-5-mini "summarise this repository"
or any OpenAI-compatible server (vLLM, llama.cpp, Ollama):
  rho-actors chat --base-url http://localhost:8000/v1 --model my-model"""


@attrs.define(kw_only=True)
class Scene:
    """One row of the closing table: what was shown, and whether it behaved."""

    name: str
    sessions: int = 1
    status: str = "running"
    detail: str = ""
    ok: bool = False


@attrs.frozen(kw_only=True)
class Totals:
    """The closing line: how much work the scenes did together."""

    model_calls: int
    persisted: int


def main(args: argparse.Namespace) -> int:
    return trio.run(demo, args.sessions)


async def demo(n_sessions: int) -> int:
    console = Console(highlight=False)
    console.print(Panel(BANNER, title="rho-actors demo", expand=False))
    if os.environ.get("OPENAI_API_KEY"):
        console.print(
            "OPENAI_API_KEY is set, but the demo stays scripted; "
            "`rho-actors run` and `chat` use it.\n"
        )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rho-demo-") as tmp:
        scenes, totals = await _play(console, Path(tmp), n_sessions)
    console.print(_summary_table(scenes))
    console.print(
        f"{plural(totals.model_calls, 'model call')} · "
        f"{plural(totals.persisted, 'session')} persisted and "
        "replayed in a scratch store, deleted on exit (`rho-actors run` and `chat` keep "
        "theirs for `rho-actors sessions list`) · "
        f"{time.perf_counter() - started:.1f} s in all"
    )
    return EXIT_OK if all(scene.ok for scene in scenes) else EXIT_ERROR


async def _play(console: Console, tmp: Path, n_sessions: int) -> tuple[list[Scene], Totals]:
    """All four scenes at once, under one supervisor, against one scripted server."""
    work = _workspace(tmp)
    store = SessionStore(tmp / "sessions")
    fan = Scene(name="fan-out", sessions=n_sessions)
    approval, cancel, compaction = (
        Scene(name="approval"),
        Scene(name="cancellation"),
        Scene(name="compaction"),
    )
    async with open_scripted_server(default=_respond, chunk_delay=0.002) as server:
        readonly = _agent(server.base_url, work, "readonly")
        developer = _agent(server.base_url, work, "developer")
        async with open_supervisor(store=store) as supervisor, trio.open_nursery() as nursery:
            nursery.start_soon(_fan_out_scene, console, supervisor, readonly, fan)
            nursery.start_soon(_approval_scene, console, supervisor, developer, work, approval)
            nursery.start_soon(_cancel_scene, console, supervisor, readonly, cancel)
            nursery.start_soon(_compaction_scene, console, supervisor, readonly, compaction)
        model_calls = len(server.chat_requests)
    totals = Totals(model_calls=model_calls, persisted=len(await store.alist()))
    return [fan, approval, cancel, compaction], totals


def _workspace(tmp: Path) -> Path:
    work = tmp / "work"
    work.mkdir()
    for i in range(5):
        (work / f"file{i}.txt").write_text(f"file {i}\n")
    return work


def _agent(base_url: str, work: Path, profile: str) -> Agent:
    return Agent(
        AgentConfig(
            system_prompt="You are a careful file clerk.",
            model="scripted",
            base_url=base_url,
            profile=profile,
            working_dir=str(work),
        )
    )


# --- the scripted model ----------------------------------------------------


def _respond(request: RecordedRequest) -> Reply:
    """The script: what a model would plausibly answer to each kind of request."""
    messages = request.messages
    last = messages[-1] if messages else {}
    content = str(last.get("content") or "")
    if content.startswith(SUMMARY_INSTRUCTIONS[:40]):
        return Reply.text("Summary: the build server is hydra; deployments are on Tuesdays.")
    if last.get("role") == "tool":
        return _after_tool(messages, content)
    if "slow" in content:
        return Reply.text("This answer streams very slowly. " * 20, chunk_delay=0.05)
    if "notes" in content:
        notes = {"path": "notes.txt", "content": "hydra builds, Tuesday deploys\n"}
        return Reply.tool_call("write", notes, text="I'll save the notes. ")
    if content.startswith("Remember"):
        return Reply.text("Noted. " + "I will keep that in mind for later questions. " * 3)
    if "on call" in content:
        return Reply.text("Ana is on call, and we deploy on Tuesdays.")
    return Reply.tool_call("list", {"path": "."}, text="Let me look. ")


def _after_tool(messages: list[dict[str, Any]], result: str) -> Reply:
    calls = next((m.get("tool_calls") for m in reversed(messages) if m.get("tool_calls")), None)
    tool = (calls or [{}])[0].get("function", {}).get("name")
    if tool == "write":
        return Reply.text("Saved notes.txt.")
    entries = [line for line in result.splitlines() if line.strip()]
    return Reply.text(f"The directory holds {len(entries)} entries.", chunk_size=6)


# --- the scenes --------------------------------------------------------------


async def _fan_out_scene(
    console: Console, supervisor: Supervisor, agent: Agent, scene: Scene
) -> None:
    started = time.perf_counter()
    jobs = [Job(prompt=f"Count the files ({i}).", key=i) for i in range(scene.sessions)]
    statuses: list[str] = []
    tool_calls = tokens = 0
    async with fan_out(jobs, agent=agent, concurrency=64, supervisor=supervisor) as results:
        async for done in results:
            statuses.append(done.status)
            if done.result is not None:
                tool_calls += sum(1 for e in done.result.events if e.type == "tool_start")
                tokens += int(done.result.usage.get("total_tokens", 0))
    completed = statuses.count("completed")
    seconds = time.perf_counter() - started
    scene.status = "completed" if completed == scene.sessions else "error"
    scene.detail = (
        f"{completed}/{scene.sessions} completed, {tool_calls} `list` calls, "
        f"{tokens:,} tokens in {seconds:.2f} s"
    )
    scene.ok = completed == scene.sessions
    console.print(f"▶ fan-out: {scene.detail}")


async def _approval_scene(
    console: Console, supervisor: Supervisor, agent: Agent, work: Path, scene: Scene
) -> None:
    session = await supervisor.start_session(agent)
    asked: list[str] = []

    async def scripted_answer(tool: str, args: dict[str, Any]) -> bool:
        asked.append(tool)
        console.print(
            Text.assemble(
                f"? approve {tool} {format_args(args)}? → ",
                ("yes", "bold green"),
                " (a scripted answer; `rho-actors run` asks you)",
            )
        )
        return True

    session.approval_callback = scripted_answer
    result = await session.run("Save my notes, please.")
    written = (work / "notes.txt").is_file()
    scene.status = result.status
    scene.detail = f"`write` waited for approval, was approved, notes.txt written: {written}"
    scene.ok = result.status == "completed" and asked == ["write"] and written


async def _cancel_scene(
    console: Console, supervisor: Supervisor, agent: Agent, scene: Scene
) -> None:
    session = await supervisor.start_session(agent)
    streaming = trio.Event()

    def on_event(event: AgentEvent) -> None:
        if event.type == "text":
            streaming.set()

    cancelled_at = 0.0

    async def cancel_soon() -> None:
        nonlocal cancelled_at
        await streaming.wait()
        await trio.sleep(0.3)
        cancelled_at = time.perf_counter()
        await session.cancel(CANCEL_REASON)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(cancel_soon)
        result = await session.run("Tell me something slow.", on_event=on_event)
    latency_ms = (time.perf_counter() - cancelled_at) * 1000
    console.print(
        f"✗ cancelled mid-stream: {result.cancel_reason} (returned in {latency_ms:.1f} ms)"
    )
    again = await session.run("Count the files again.")
    scene.status = result.status
    scene.detail = (
        f"cancelled 0.3 s into a slow stream, run returned {latency_ms:.1f} ms later; "
        f"the next run on the same session: {again.status}"
    )
    scene.ok = result.status == "cancelled" and again.status == "completed"


async def _compaction_scene(
    console: Console, supervisor: Supervisor, agent: Agent, scene: Scene
) -> None:
    """Auto-compaction, made to happen once: the window shrinks to what the history takes.

    A fixed tiny window would compact again after every turn (the tool
    definitions alone fill it), so before the last turn that adds history
    we set the window so the history sits exactly at the compaction
    threshold; that turn pushes it over, and the next run compacts before
    its first model call. The window is restored once the summary is in.
    """
    session = await supervisor.start_session(agent)
    normal_window = session.context_window
    sizes: list[int] = []

    def on_event(event: AgentEvent) -> None:
        if event.type == "compact_start":
            sizes.append(len(session.state.messages))
        elif event.type == "compact_end" and event.content:
            sizes.append(len(session.state.messages))
            session.context_window = normal_window
            console.print("⋯ compacted: older turns replaced by the model's summary")

    *filling, last_fill, question = COMPACTION_PROMPTS
    for prompt in filling:
        await session.run(prompt, on_event=on_event)
    window = int(session.context_tokens() / session.compact_threshold)
    session.context_window = window
    await session.run(last_fill, on_event=on_event)
    result = await session.run(question, on_event=on_event)
    scene.status = result.status
    before, after = [*sizes, 0, 0][:2]
    scene.detail = (
        f"window shrunk to {window:,} tokens: 1 auto-compaction, {before} messages → {after}; "
        f"last answer: {result.text!r}"
    )
    scene.ok = result.status == "completed" and len(sizes) == 2 and after < before


def _summary_table(scenes: list[Scene]) -> Table:
    table = Table(title="what happened", title_justify="left")
    table.add_column("scene", no_wrap=True)
    table.add_column("sessions", justify="right")
    table.add_column("status", no_wrap=True)
    table.add_column("details")
    for scene in scenes:
        table.add_row(
            scene.name,
            str(scene.sessions),
            Text(scene.status, style=status_style(scene.status)),
            scene.detail + ("" if scene.ok else "  [unexpected]"),
        )
    return table
