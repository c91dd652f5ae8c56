"""The rho-actors command, driven as a user drives it: a child process, a scripted model.

The scripted server runs in the test's own trio loop, so the CLI is started
with trio's async process API and its output read asynchronously; a blocking
``subprocess.run`` would stop the loop and the server with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
import trio
import yaml

from rho_actors.testing import Fault, RecordedRequest, Reply, ScriptedServer

CLI = (sys.executable, "-m", "rho_actors")
TIMEOUT = 30


@attrs.frozen
class Ran:
    """A finished CLI process."""

    code: int
    out: str
    err: str


def _env(**extra: str) -> dict[str, str]:
    # Wide enough that tables never truncate what a test looks for.
    return {**os.environ, "COLUMNS": "200", **extra}


async def cli(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> Ran:
    with trio.fail_after(TIMEOUT):
        done = await trio.run_process(
            [*CLI, *args],
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=env or _env(),
        )
    return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())


class Child:
    """A CLI process we can signal while it runs; its output is collected as it comes."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.out = bytearray()
        self.err = bytearray()

    async def _drain(self, stream: trio.abc.ReceiveStream | None, into: bytearray) -> None:
        assert stream is not None
        while chunk := await stream.receive_some():
            into.extend(chunk)

    async def wait(self) -> Ran:
        with trio.fail_after(TIMEOUT):
            code = await self.process.wait()
        return Ran(code, self.out.decode(), self.err.decode())


async def start(nursery: trio.Nursery, *args: str) -> Child:
    process = await trio.lowlevel.open_process(
        [*CLI, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    child = Child(process)
    nursery.start_soon(child._drain, process.stdout, child.out)
    nursery.start_soon(child._drain, process.stderr, child.err)
    return child


def model_flags(server: ScriptedServer) -> list[str]:
    return ["--base-url", server.base_url, "--model", "scripted"]


async def wait_for(predicate: Callable[[], bool]) -> None:
    """Poll something another process produces (a file, a listing)."""
    with trio.fail_after(TIMEOUT):
        # No event can tell us another process wrote a file: polling is the way.
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.05)


def _lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- run ---------------------------------------------------------------------


async def test_run_streams_text_and_tools_and_writes_output(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """`run` shows tool activity and the answer, exits 0, and --output holds the final text."""
    (tmp_path / "data.txt").write_text("x\n")
    server.add(
        Reply.tool_call("list", {"path": "."}, text="Looking. "),
        Reply.text("The folder holds data.txt.", chunk_size=3),
    )
    out = tmp_path / "answer.txt"
    flags = [*model_flags(server), "--working-dir", str(tmp_path), "--output", str(out)]
    ran = await cli("run", "what is here?", *flags)
    assert ran.code == 0, ran.err
    assert "Looking. " in ran.out
    assert "The folder holds data.txt." in ran.out
    assert "→ list" in ran.err
    assert "completed" in ran.err
    assert out.read_text() == "The folder holds data.txt.\n"


async def test_run_output_is_not_written_when_the_run_fails(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """A failed run leaves no --output file (an empty one would read as an answer)."""
    server.default = None  # every request: HTTP 500 "script exhausted"
    out = tmp_path / "answer.txt"
    store = ["--store", str(tmp_path / "sessions")]
    ran = await cli("run", "hi", *model_flags(server), *store, "--output", str(out))
    assert ran.code != 0
    assert not out.exists()
    assert "nothing written" in ran.err


async def test_config_error_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    """A bad config file exits 2 with one line naming the file and the key, no traceback."""
    config = tmp_path / "agent.yaml"
    config.write_text("model: gpt-5-mini\nmax_turns: many\n")
    ran = await cli("run", "hi", "--config", str(config))
    assert ran.code == 2
    assert ran.err.count("\n") == 1, ran.err
    assert str(config) in ran.err
    assert "max_turns" in ran.err
    assert "positive integer" in ran.err
    assert "Traceback" not in ran.err


@pytest.mark.parametrize("where", ["flag", "config", "extends"])
async def test_an_unknown_profile_names_where_it_was_asked_for(tmp_path: Path, where: str) -> None:
    """--profile, ``profile:`` in a --config file, ``extends:`` in a profile file."""
    profile = tmp_path / "mine.yaml"
    profile.write_text("name: mine\nextends: nosuch\n")
    config = tmp_path / "agent.yaml"
    config.write_text("model: m\nprofile: bogus\n")
    args = {
        "flag": ["--profile", "bogus"],
        "config": ["--config", str(config)],
        "extends": ["--profile", str(profile)],
    }[where]
    ran = await cli("run", "hi", *args)
    assert ran.code == 2
    assert ran.err.count("\n") == 1, ran.err
    expected = {
        "flag": "error: --profile: no profile named 'bogus'",
        "config": f"error: {config}: key 'profile': no profile named 'bogus'",
        "extends": f"error: {profile}: key 'extends': no profile named 'nosuch' on line 2",
    }[where]
    assert expected in ran.err
    assert "(expected one of readonly, developer, unrestricted" in ran.err


async def test_bad_flag_is_one_line_usage_error() -> None:
    """A malformed flag value exits 2 with one line naming the flag."""
    ran = await cli("run", "hi", "--var", "no-equals-sign")
    assert ran.code == 2
    assert ran.err.count("\n") == 1, ran.err
    assert "--var" in ran.err
    assert "NAME=VALUE" in ran.err


async def test_sigint_cancels_the_run(server: ScriptedServer, tmp_path: Path) -> None:
    """The first Ctrl-C cancels the run cleanly: exit 130, "cancelled", the stream is closed."""
    server.add(Reply.text("x", first_byte_delay=3600))
    async with trio.open_nursery() as nursery:
        child = await start(nursery, "run", "hello", *model_flags(server))
        with trio.fail_after(TIMEOUT):
            await server.wait_until(lambda: server.open_streams > 0)
        child.process.send_signal(signal.SIGINT)
        ran = await child.wait()
    assert ran.code == 130, ran.err
    assert "cancelled: interrupted (Ctrl-C)" in ran.err
    assert "Traceback" not in ran.err
    with trio.fail_after(TIMEOUT):
        await server.wait_for_disconnects(1)


async def test_approval_without_a_terminal_is_denied_unless_yes(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """With no TTY a call that needs approval is denied; --yes approves it."""
    call = Reply.tool_call("write", {"path": "out.txt", "content": "hi\n"})
    flags = [*model_flags(server), "--profile", "developer", "--working-dir", str(tmp_path)]
    server.add(call, Reply.text("gave up"))
    denied = await cli("run", "write it", *flags)
    assert denied.code == 0, denied.err
    assert "denied write" in denied.err
    assert "--yes" in denied.err
    assert not (tmp_path / "out.txt").exists()

    server.add(call, Reply.text("written"))
    approved = await cli("run", "write it", *flags, "--yes")
    assert approved.code == 0, approved.err
    assert "approved write" in approved.err
    assert (tmp_path / "out.txt").read_text() == "hi\n"


# --- chat and sessions ---------------------------------------------------------


async def test_chat_then_sessions_resume_keep_one_history(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """Chat turns and slash commands work on piped stdin; `sessions resume` continues them."""
    store = tmp_path / "store"
    server.add(Reply.text("first answer"), Reply.text("second answer"))
    script = b"hello\n/usage\n/profile readonly\n/nonsense\nagain\n/exit\n"
    flags = [*model_flags(server), "--store", str(store)]
    chat = await cli("chat", *flags, stdin=script)
    assert chat.code == 0, chat.err
    assert "first answer" in chat.out
    assert "second answer" in chat.out
    assert "total tokens" in chat.err
    assert "profile readonly from the next turn" in chat.err
    assert "unknown command /nonsense" in chat.err
    [session_dir] = [p for p in store.iterdir() if p.is_dir()]
    assert json.loads((session_dir / "meta.json").read_text())["run_count"] == 2

    server.add(Reply.text("third answer"))
    resumed = await cli("sessions", "resume", session_dir.name[:8], *flags, stdin=b"once more\n")
    assert resumed.code == 0, resumed.err
    assert "4 messages so far" in resumed.err
    assert "third answer" in resumed.out
    assert server.chat_requests[-1].messages[-1]["content"] == "once more"
    assert len(server.chat_requests[-1].messages) == 5
    assert json.loads((session_dir / "meta.json").read_text())["run_count"] == 3


async def test_chat_timeout_ends_a_stalled_turn_and_the_chat_goes_on(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.add(Fault.stall(after_chunks=1), Reply.text("back again"))
    flags = [*model_flags(server), "--store", str(tmp_path / "store"), "--timeout", "1"]
    chat = await cli("chat", *flags, stdin=b"hang\nhello\n/exit\n")
    assert chat.code == 0, chat.err
    assert "deadline exceeded" in chat.err
    assert "back again" in chat.out
    bad = await cli("chat", *flags[:-1], "0", stdin=b"")
    assert bad.code == 2
    assert "--timeout: expected a positive number of seconds, got 0" in bad.err


async def test_sessions_list_show_export_after_run(server: ScriptedServer, tmp_path: Path) -> None:
    """After a run with --store, sessions list/show/export describe it from the files."""
    store = tmp_path / "store"
    server.add(Reply.tool_call("list", {"path": "."}), Reply.text("It is empty."))
    result_file = tmp_path / "result.json"
    ran = await cli(
        "run",
        "look around",
        *model_flags(server),
        "--working-dir",
        str(tmp_path),
        "--store",
        str(store),
        "--output",
        str(result_file),
    )
    assert ran.code == 0, ran.err
    result = json.loads(result_file.read_text())
    assert result["status"] == "completed"
    assert result["text"] == "It is empty."
    session_id = result["session_id"]

    listing = await cli("sessions", "list", "--store", str(store))
    assert listing.code == 0, listing.err
    assert session_id[:12] in listing.out
    assert "completed" in listing.out
    assert "look around" in listing.out

    show = await cli("sessions", "show", session_id[:6], "--store", str(store))
    assert show.code == 0, show.err
    assert show.out.index("user") < show.out.index("look around") < show.out.index("→ list")
    assert "tool result" in show.out
    assert "It is empty." in show.out

    exported = tmp_path / "export.json"
    export = await cli(
        "sessions", "export", session_id, "--store", str(store), "--output", str(exported)
    )
    assert export.code == 0, export.err
    data = json.loads(exported.read_text())
    assert set(data) == {"id", "info", "messages", "usage", "status", "run_count"}
    assert data["id"] == session_id
    assert data["status"] == "completed"
    assert data["run_count"] == 1
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert data["info"]["first_prompt"] == "look around"
    assert data["usage"]["total_tokens"] > 0

    missing = await cli("sessions", "show", "nope", "--store", str(store))
    assert missing.code == 2
    assert "no session 'nope'" in missing.err


# --- dispatch ------------------------------------------------------------------


def _tracking(server: ScriptedServer, delay: float) -> list[int]:
    """Answer after ``delay`` and record the peak number of streams open at once."""
    peak = [0]

    def respond(request: RecordedRequest) -> Reply:
        peak[0] = max(peak[0], server.open_streams + 1)
        return Reply.text(f"re: {request.messages[-1]['content']}", first_byte_delay=delay)

    server.default = respond
    return peak


async def test_dispatch_honours_concurrency_and_writes_jsonl(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """dispatch runs at most --concurrency at once and writes one JSONL result per task."""
    peak = _tracking(server, delay=0.2)
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        yaml.safe_dump({"tasks": [{"id": f"t{i}", "prompt": f"p{i}"} for i in range(6)]})
    )
    output = tmp_path / "results.jsonl"
    flags = [*model_flags(server), "--no-store", "--concurrency", "2", "--output", str(output)]
    ran = await cli("dispatch", str(tasks), *flags)
    assert ran.code == 0, ran.err
    assert peak[0] == 2
    records = _lines(output)
    assert sorted(str(r["id"]) for r in records) == [f"t{i}" for i in range(6)]
    for record in records:
        assert set(record) >= {"id", "status", "text", "usage", "error", "seconds"}
        assert record["status"] == "completed"
        assert record["text"] == f"re: p{str(record['id'])[1:]}"
        assert record["error"] is None
    assert "completed" in ran.out


async def test_dispatch_timeout_ends_only_the_slow_runs(
    server: ScriptedServer, tmp_path: Path
) -> None:
    def respond(request: RecordedRequest) -> Reply:
        slow = "slow" in str(request.messages[-1]["content"])
        return Reply.text("done", first_byte_delay=3600 if slow else 0)

    server.default = respond
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(yaml.safe_dump([{"id": p, "prompt": p} for p in ("fast", "slow")]))
    output = tmp_path / "results.jsonl"
    flags = [*model_flags(server), "--no-store", "--output", str(output), "--timeout", "1"]
    ran = await cli("dispatch", str(tasks), *flags)
    assert ran.code == 1, ran.err
    statuses = {str(r["id"]): (r["status"], r["error"]) for r in _lines(output)}
    assert statuses == {"fast": ("completed", None), "slow": ("cancelled", "deadline exceeded")}


async def test_dispatch_task_overrides_pick_the_agent(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """A JSONL task's model overrides the flags' model for that task only."""
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"prompt": "a"}\n\n{"prompt": "b", "model": "other-model", "id": 7}\n')
    output = tmp_path / "out.jsonl"
    ran = await cli(
        "dispatch", str(tasks), *model_flags(server), "--no-store", "--output", str(output)
    )
    assert ran.code == 0, ran.err
    models = {r.messages[-1]["content"]: r.model for r in server.chat_requests}
    assert models == {"a": "scripted", "b": "other-model"}
    assert sorted(str(r["id"]) for r in _lines(output)) == ["1", "7"]


async def test_bad_dispatch_file_names_file_task_and_field(tmp_path: Path) -> None:
    """A malformed task file exits 2 with one line: file, task and line, field, expectation."""
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text("tasks:\n  - prompt: fine\n  - id: second\n    model: x\n")
    ran = await cli("dispatch", str(tasks))
    assert ran.code == 2
    assert ran.err.count("\n") == 1, ran.err
    assert f"{tasks}: task 2 (line 3): field 'prompt' is missing" in ran.err

    jsonl = tmp_path / "tasks.jsonl"
    jsonl.write_text('{"prompt": "a"}\n{"prompt": "b",\n')
    ran = await cli("dispatch", str(jsonl))
    assert ran.code == 2
    assert f"{jsonl}: line 2: invalid JSON" in ran.err


async def test_sigint_cancels_dispatch_and_reports_what_finished(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """Ctrl-C during dispatch cancels every run, keeps finished results, and says which."""

    def respond(request: RecordedRequest) -> Reply:
        prompt = str(request.messages[-1]["content"])
        return Reply.text("done", first_byte_delay=3600 if prompt.startswith("slow") else 0)

    server.default = respond
    # slow 4 waits for a slot: Ctrl-C frees three, and must start nothing more.
    prompts = ["quick 1", "quick 2", "slow 1", "slow 2", "slow 3", "slow 4"]
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(yaml.safe_dump([{"id": p.replace(" ", ""), "prompt": p} for p in prompts]))
    output = tmp_path / "results.jsonl"
    flags = [*model_flags(server), "--no-store", "--concurrency", "3", "--output", str(output)]
    async with trio.open_nursery() as nursery:
        child = await start(nursery, "dispatch", str(tasks), *flags)
        await wait_for(lambda: len(_lines(output)) == 2)
        with trio.fail_after(TIMEOUT):
            await server.wait_until(lambda: server.open_streams == 3)
        child.process.send_signal(signal.SIGINT)
        ran = await child.wait()
    assert ran.code == 130, ran.err
    assert "interrupted: 2 tasks finished (quick1, quick2), 3 cancelled, 1 not started" in ran.out
    statuses = {str(r["id"]): r["status"] for r in _lines(output)}
    assert statuses == {
        "quick1": "completed",
        "quick2": "completed",
        "slow1": "cancelled",
        "slow2": "cancelled",
        "slow3": "cancelled",
    }
    with trio.fail_after(TIMEOUT):
        await server.wait_for_disconnects(3)
    assert len(server.chat_requests) == 5


def test_dispatch_eta_is_the_average_throughput_so_far() -> None:
    """Forty left after ten finished in twenty seconds: about eighty seconds, not one."""
    from rho_actors.cli._dispatch import Tally

    tally = Tally(total=50, concurrency=10)
    assert tally.eta(5.0) is None  # nothing finished yet: no guess
    tally.done = 10
    assert tally.eta(20.0) == 80.0


# --- monitor, profiles, demo --------------------------------------------------------


async def test_monitor_shows_a_running_session_and_cancels_it(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """monitor --once lists the running session; --cancel stops it from another process."""
    store = tmp_path / "store"
    server.add(Reply.text("x", first_byte_delay=3600))
    async with trio.open_nursery() as nursery:
        child = await start(nursery, "run", "long job", *model_flags(server), "--store", str(store))
        with trio.fail_after(TIMEOUT):
            await server.wait_until(lambda: server.open_streams > 0)
        await wait_for(lambda: any(store.glob("*/meta.json")))
        [meta] = store.glob("*/meta.json")
        session_id = meta.parent.name

        table = await cli("monitor", "--once", "--store", str(store))
        assert table.code == 0, table.err
        row = next(line for line in table.out.splitlines() if session_id[:12] in line)
        assert "running" in row
        assert "scripted" in row

        cancel = await cli(
            "monitor", "--cancel", session_id[:8], "--reason", "stop it", "--store", str(store)
        )
        assert cancel.code == 0, cancel.err
        assert f"cancel requested for session {session_id}" in cancel.out
        ran = await child.wait()
    assert ran.code == 130, ran.err
    assert "cancelled: stop it" in ran.err
    with trio.fail_after(TIMEOUT):
        await server.wait_for_disconnects(1)


async def test_profiles_list_and_show() -> None:
    """profiles list compares the built-ins; show explains every field of one."""
    listing = await cli("profiles", "list")
    assert listing.code == 0, listing.err
    header = next(line for line in listing.out.splitlines() if "readonly" in line)
    assert "developer" in header
    assert "unrestricted" in header
    approval = next(line for line in listing.out.splitlines() if "approval" in line)
    assert "dangerous" in approval

    show = await cli("profiles", "show", "readonly")
    assert show.code == 0, show.err
    for field in ("shell", "shell_allowlist", "file_write", "approval", "sandbox", "network"):
        assert field in show.out
    assert "restricted" in show.out

    missing = await cli("profiles", "show", "no-such-profile")
    assert missing.code == 2
    assert "no-such-profile" in missing.err


async def test_demo_runs_offline_in_under_30_seconds() -> None:
    """The demo says it is scripted, shows each scene, and exits 0 in well under 30 s."""
    started = time.perf_counter()
    ran = await cli("demo")
    assert ran.code == 0, ran.out + ran.err
    assert time.perf_counter() - started < 30
    assert "SCRIPTED" in ran.out
    assert "OPENAI_API_KEY" in ran.out
    assert "? approve write" in ran.out
    assert "cancelled mid-stream" in ran.out
    assert "compacted" in ran.out
    assert "24/24 completed" in ran.out


async def test_run_without_key_or_endpoint_uses_the_offline_model(tmp_path: Path) -> None:
    """No OPENAI_API_KEY and no --base-url: one line says so, and the embedded offline
    model drives the real tools (list, then read) to an answer."""
    (tmp_path / "notes.txt").write_text("deploys on Tuesdays\n")
    env = {
        k: v
        for k, v in _env().items()
        if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "RHO_ACTORS_BASE_URL")
    }
    ran = await cli(
        "run",
        "what is here?",
        "--working-dir",
        str(tmp_path),
        "--store",
        str(tmp_path / "s"),
        env=env,
    )
    assert ran.code == 0, ran.err
    assert "using the embedded offline model" in ran.err
    assert "→ list" in ran.err and "→ read" in ran.err
    assert "deploys on Tuesdays" in ran.out


async def test_sessions_list_newest_first_with_limit_status_and_json(
    server: ScriptedServer, tmp_path: Path
) -> None:
    store = str(tmp_path / "sessions")
    server.default = lambda request: Reply.text("ok")
    for prompt in ("first", "second", "third"):
        ran = await cli("run", prompt, *model_flags(server), "--store", store)
        assert ran.code == 0, ran.err
    listed = await cli("sessions", "list", "--store", store, "--json")
    rows = json.loads(listed.out)
    assert [r["first_prompt"] for r in rows] == ["third", "second", "first"]
    limited = json.loads(
        (await cli("sessions", "list", "--store", store, "--json", "--limit", "2")).out
    )
    assert [r["first_prompt"] for r in limited] == ["third", "second"]
    none = await cli("sessions", "list", "--store", store, "--status", "paused")
    assert "no sessions" in none.out


async def test_an_unreachable_endpoint_is_visible_at_once_and_timeout_ends_the_run(
    tmp_path: Path,
) -> None:
    """The endpoint and each retry are shown as they happen; --timeout ends the run."""
    env = _env(OPENAI_API_KEY="sk-test")
    ran = await cli(
        "run",
        "hi",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--store",
        str(tmp_path / "s"),
        "--timeout",
        "1.5",
        env=env,
    )
    assert "http://127.0.0.1:9/v1: cannot reach the model endpoint" in ran.err
    assert "retrying in" in ran.err and "(attempt 2 of 5)" in ran.err
    assert "deadline exceeded" in ran.err
    slow = await cli(
        "run",
        "hi",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--store",
        str(tmp_path / "s"),
        env={**env, "RHO_ACTORS_TIMEOUT_SECONDS": "1"},
    )
    assert "deadline exceeded" in slow.err


async def test_sessions_show_prints_long_messages_whole(
    server: ScriptedServer, tmp_path: Path
) -> None:
    store = str(tmp_path / "sessions")
    server.add(Reply.text("word " * 100 + "THE-END"))
    ran = await cli("run", "x " * 80 + "PROMPT-END", *model_flags(server), "--store", store)
    assert ran.code == 0, ran.err
    listed = json.loads((await cli("sessions", "list", "--store", store, "--json")).out)
    shown = await cli("sessions", "show", listed[0]["id"], "--store", store, env=_env(COLUMNS="80"))
    assert "PROMPT-END" in shown.out and "THE-END" in shown.out
    assert "1 run ·" in shown.out


async def test_dispatch_warns_when_no_answer_would_be_kept(
    server: ScriptedServer, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(yaml.safe_dump({"tasks": [{"prompt": "p"}]}))
    ran = await cli("dispatch", str(tasks), *model_flags(server), "--no-store")
    assert ran.code == 0, ran.err
    assert "--no-store without --output keeps no answer" in ran.err


async def test_dispatch_stops_early_when_every_run_fails_the_same_way(
    server: ScriptedServer, tmp_path: Path
) -> None:
    server.default = None  # every request: HTTP 500 "script exhausted"
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(yaml.safe_dump({"tasks": [{"prompt": f"p{i}"} for i in range(30)]}))
    output = tmp_path / "out.jsonl"
    flags = [*model_flags(server), "--no-store", "--concurrency", "2", "--output", str(output)]
    ran = await cli("dispatch", str(tasks), *flags)
    assert ran.code != 0
    assert "stopping: the first 5 runs all failed the same way" in ran.err
    assert len(_lines(output)) < 30
