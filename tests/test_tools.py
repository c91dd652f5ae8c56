"""The built-in tools, run for real against temporary directories and processes."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from rho_actors import _sandbox
from rho_actors._profiles import BUILTIN_PROFILES, PermissionProfile
from rho_actors._tools import (
    ToolContext,
    ToolHandler,
    ToolOutput,
    ToolRegistry,
    function_tool,
)
from rho_actors.tools import (
    BashTool,
    EditTool,
    GlobTool,
    GrepTool,
    ListTool,
    ReadTool,
    SqliteTool,
    WriteTool,
    builtin_tools,
)
from rho_actors.tools._process import group_has_live_members

READONLY = BUILTIN_PROFILES["readonly"]
DEVELOPER = BUILTIN_PROFILES["developer"]
UNRESTRICTED = BUILTIN_PROFILES["unrestricted"]
# The developer profile, minus approvals: what most tool tests run under.
DEV = attrs.evolve(DEVELOPER, approval="none")
NO_SANDBOX_RO = attrs.evolve(READONLY, sandbox="off")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A small project to work in."""
    root = tmp_path / "work"
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "a.py").write_text("def foo():\n    return 1\n")
    (root / "src" / "sub" / "b.py").write_text("foo = 2\nbar = 3\n")
    (root / "README.md").write_text("Foo and bar\nfood\n")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("foo\n")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "h.txt").write_text("a foo here\n")
    (root / "bin.dat").write_bytes(b"\x00foo binary\n")
    return root


def ctx_for(work: Path) -> ToolContext:
    return ToolContext(session_id="s1", call_id="c1", working_dir=work)


async def call(tool: ToolHandler, work: Path, **args: Any) -> ToolOutput:
    result = await tool.handle(args, ctx_for(work))
    assert isinstance(result, ToolOutput)
    return result


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] not in (b"Z", b"X")


def processes_with_cmdline(marker: str) -> list[int]:
    """PIDs of live processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\x00", b" ").decode()
        except OSError:
            continue
        if marker in cmdline and alive(int(entry)):
            found.append(int(entry))
    return found


async def wait_for_file(path: Path, *, lines: int = 1) -> list[int]:
    """Wait (briefly, for real) until a command has written its PIDs."""
    with trio.fail_after(5):
        while True:
            if await trio.Path(path).exists():
                values = (await trio.Path(path).read_text()).split()
                if len(values) >= lines:
                    return [int(v) for v in values]
            await trio.sleep(0.01)


# --- bash ------------------------------------------------------------------------


async def test_bash_merges_output_and_reports_exit_code(work: Path) -> None:
    """stdout and stderr come back together; a non-zero exit is reported, not an error."""
    out = await call(BashTool(DEV), work, command="echo out; echo err >&2; exit 3")
    assert not out.is_error
    assert "out" in out.content and "err" in out.content
    assert out.content.endswith("[exit code 3]")
    assert out.metadata["exit_code"] == 3


async def test_bash_runs_in_working_dir_without_stdin(work: Path) -> None:
    """The command runs in the working directory and reads EOF from stdin at once."""
    out = await call(BashTool(DEV), work, command="pwd; cat; echo done")
    assert out.content.splitlines() == [str(await trio.Path(work).resolve()), "done"]
    assert out.metadata["exit_code"] == 0


async def test_bash_empty_output(work: Path) -> None:
    """A silent command says so."""
    out = await call(BashTool(DEV), work, command="true")
    assert out.content == "(no output)"


async def test_bash_output_keeps_head_and_tail(work: Path) -> None:
    """Long output keeps its beginning and end, with an exact count of what was dropped."""
    profile = attrs.evolve(DEV, max_output_chars=1000)
    out = await call(BashTool(profile), work, command="seq 1 100000")
    total = len("".join(f"{i}\n" for i in range(1, 100001)))
    assert out.content.startswith("1\n2\n3\n")
    assert out.content.rstrip().endswith("99999\n100000")
    assert f"\n... [truncated {total - 1000} of {total} characters] ...\n" in out.content
    assert out.metadata["truncated_chars"] == total - 1000
    assert len(out.content) < 1100


async def test_bash_restricted_refusal_is_a_result(work: Path) -> None:
    """A refused command is an error result naming the reason; nothing runs."""
    out = await call(BashTool(NO_SANDBOX_RO), work, command="ls && rm -rf src")
    assert out.is_error
    assert "'rm' is blocked" in out.content
    assert out.metadata["refused"] is True
    assert (work / "src" / "a.py").exists()


async def test_bash_shell_off(work: Path) -> None:
    """With the shell off the tool refuses every command."""
    out = await call(BashTool(attrs.evolve(DEV, shell="off")), work, command="true")
    assert out.is_error
    assert "disabled" in out.content


async def test_bash_bad_arguments_are_results(work: Path) -> None:
    """Missing or mistyped arguments become error results, never exceptions."""
    assert (await call(BashTool(DEV), work)).is_error
    assert (await call(BashTool(DEV), work, command=5)).is_error
    out = await call(BashTool(DEV), work, command="true", timeout=-1)
    assert out.is_error
    assert "timeout" in out.content


async def test_bash_timeout_kills_the_whole_tree(work: Path) -> None:
    """On timeout the shell and its background children are all stopped."""
    profile = attrs.evolve(DEV, bash_timeout=0.5)
    started = time.monotonic()
    out = await call(
        BashTool(profile),
        work,
        command="sleep 30 & echo $! >> pids; sleep 30 & echo $! >> pids; echo $$ >> pids; wait",
    )
    assert time.monotonic() - started < 5
    assert out.is_error
    assert out.metadata["timed_out"] is True
    assert "timed out after 0.5 s" in out.content
    pids = [int(p) for p in (work / "pids").read_text().split()]
    assert len(pids) == 3
    assert not any(alive(pid) for pid in pids)
    assert not group_has_live_members(pids[-1])


async def test_bash_timeout_argument_is_capped_by_profile(work: Path) -> None:
    """The model may shorten the time limit but not extend it."""
    profile = attrs.evolve(DEV, bash_timeout=0.3)
    started = time.monotonic()
    out = await call(BashTool(profile), work, command="sleep 30", timeout=100)
    assert out.metadata["timed_out"] is True
    assert time.monotonic() - started < 5


async def test_bash_cancellation_kills_the_whole_tree(work: Path) -> None:
    """Cancelling the call stops every process of the command before it returns."""
    tool = BashTool(DEV)
    command = "sleep 30 & echo $! >> pids; echo $$ >> pids; sleep 30"
    with trio.move_on_after(5) as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tool.handle, {"command": command}, ctx_for(work))
            pids = await wait_for_file(work / "pids", lines=2)
            nursery.cancel_scope.cancel(reason="test cancels the call")
    assert not scope.cancelled_caught
    assert not any(alive(pid) for pid in pids)
    assert not group_has_live_members(pids[-1])


async def test_bash_sigterm_ignored_escalates_to_sigkill(work: Path) -> None:
    """Processes that ignore SIGTERM are killed after the grace period."""
    profile = attrs.evolve(DEV, bash_timeout=0.3)
    started = time.monotonic()
    out = await call(
        BashTool(profile, kill_grace=0.3),
        work,
        command="trap '' TERM; sleep 30 & echo $! >> pids; echo $$ >> pids; wait",
    )
    assert out.metadata["timed_out"] is True
    assert time.monotonic() - started < 5
    pids = [int(p) for p in (work / "pids").read_text().split()]
    assert not any(alive(pid) for pid in pids)


async def test_bash_background_jobs_do_not_outlive_the_command(work: Path) -> None:
    """A command that leaves a job behind returns at once, and the job is stopped."""
    started = time.monotonic()
    out = await call(BashTool(DEV), work, command="sleep 30 & echo $! > pid; echo started")
    assert time.monotonic() - started < 5
    assert out.content.strip() == "started"
    assert not alive(int((work / "pid").read_text()))


async def test_bash_does_not_pass_secrets_to_commands(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """API keys and tokens are not in the command's environment (they would reach traces)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp-secret")
    monkeypatch.setenv("PLAIN_SETTING", "visible")
    command = 'echo "[$OPENAI_API_KEY][$GITHUB_TOKEN][$PLAIN_SETTING]"'
    out = await call(BashTool(DEV), work, command=command)
    assert out.content.strip() == "[][][visible]"
    out = await call(BashTool(DEV, inherit_secrets=True), work, command=command)
    assert out.content.strip() == "[sk-secret][ghp-secret][visible]"


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Pretend bubblewrap is not installed."""
    real_which = shutil.which

    def which(name: str, *args: Any, **kwargs: Any) -> str | None:
        return None if name == "bwrap" else real_which(name, *args, **kwargs)

    monkeypatch.setattr(shutil, "which", which)
    _sandbox._forget_probe()
    yield
    _sandbox._forget_probe()


async def test_sandbox_required_without_bwrap_refuses(work: Path, no_bwrap: None) -> None:
    """A profile that requires the sandbox refuses to run unsandboxed."""
    profile = attrs.evolve(DEV, sandbox="required")
    out = await call(BashTool(profile), work, command="echo hi")
    assert out.is_error
    assert "requires a sandbox" in out.content
    assert "not installed" in out.content


async def test_readonly_without_bwrap_fails_closed(work: Path, no_bwrap: None) -> None:
    """The built-in readonly requires the sandbox: without one, nothing runs."""
    out = await call(BashTool(READONLY), work, command="echo hi")
    assert out.is_error
    assert "requires a sandbox" in out.content
    assert "sandbox: preferred" in out.content


async def test_sandbox_preferred_without_bwrap_runs_plainly(work: Path, no_bwrap: None) -> None:
    """'preferred' is the explicit opt-in to parser-only mode without a sandbox."""
    profile = attrs.evolve(READONLY, sandbox="preferred")
    out = await call(BashTool(profile), work, command="echo hi")
    assert out.content.strip() == "hi"
    assert out.metadata["sandboxed"] is False


@pytest.fixture
async def bwrap() -> AsyncIterator[None]:
    """Skip unless bubblewrap really works here (scripts/install-test-deps.sh installs it)."""
    probe = await _sandbox.probe_bwrap()
    if not probe.available:
        pytest.skip(probe.reason)
    yield


async def test_sandbox_makes_readonly_hold_in_the_kernel(work: Path, bwrap: None) -> None:
    """Even an allowlisted writer cannot write: the file system is read-only."""
    profile = attrs.evolve(READONLY, shell_allowlist=(*READONLY.shell_allowlist, "touch"))
    out = await call(BashTool(profile), work, command="touch new.txt")
    assert out.metadata["sandboxed"] is True
    assert "Read-only file system" in out.content
    assert not (work / "new.txt").exists()


async def test_sandbox_writable_working_dir_only(work: Path, tmp_path: Path, bwrap: None) -> None:
    """With file writes allowed, only the working directory is writable; /tmp is private."""
    profile = attrs.evolve(DEV, sandbox="required")
    in_tmp = tmp_path / "outside.txt"
    elsewhere = Path("/var/tmp") / f"rho-actors-sandbox-{os.getpid()}"
    try:
        out = await call(
            BashTool(profile),
            work,
            command=f"touch inside.txt; touch {in_tmp}; touch {elsewhere}; echo rc=$?",
        )
        assert out.metadata["sandboxed"] is True
        assert (work / "inside.txt").exists()
        assert not in_tmp.exists()
        assert not elsewhere.exists()
        assert "Read-only file system" in out.content
        assert "rc=1" in out.content
    finally:
        elsewhere.unlink(missing_ok=True)


async def test_sandbox_without_network_has_only_loopback(work: Path, bwrap: None) -> None:
    """A profile without network runs in an empty network namespace."""
    out = await call(BashTool(READONLY), work, command="cat /proc/net/dev")
    interfaces = [line.split(":")[0].strip() for line in out.content.splitlines()[2:]]
    assert interfaces == ["lo"]


async def test_sandbox_timeout_leaves_no_process(work: Path, bwrap: None) -> None:
    """Stopping a sandboxed command stops everything inside the sandbox."""
    profile = attrs.evolve(READONLY, bash_timeout=0.5)
    out = await call(BashTool(profile), work, command="sleep 31.4159 & sleep 31.4159; wait")
    assert out.metadata["timed_out"] is True
    with trio.fail_after(5):
        # The namespace dies asynchronously after bwrap is killed: poll /proc for stragglers.
        while processes_with_cmdline("sleep 31.4159"):  # noqa: ASYNC110
            await trio.sleep(0.02)


# --- read ------------------------------------------------------------------------


@pytest.fixture
def numbered(work: Path) -> Path:
    path = work / "lines.txt"
    path.write_text("".join(f"line {i}\n" for i in range(1, 101)))
    return path


async def test_read_numbers_lines_and_reports_total(work: Path, numbered: Path) -> None:
    """Lines come numbered from 1, with the total count."""
    out = await call(ReadTool(READONLY), work, path="lines.txt", end_line=3)
    assert out.content.splitlines()[:3] == ["    1\tline 1", "    2\tline 2", "    3\tline 3"]
    assert "[lines.txt: lines 1-3 of 100; continue with start_line=4]" in out.content
    assert out.metadata["total_lines"] == 100


async def test_read_window_by_offset_and_limit(work: Path, numbered: Path) -> None:
    """offset/limit select the same window as start_line/end_line."""
    a = await call(ReadTool(READONLY), work, path="lines.txt", offset=50, limit=2)
    b = await call(ReadTool(READONLY), work, path="lines.txt", start_line=50, end_line=51)
    assert a.content == b.content
    assert a.content.splitlines()[:2] == ["   50\tline 50", "   51\tline 51"]


async def test_read_whole_small_file(work: Path) -> None:
    """A short file is shown whole, with CRLF line ends stripped."""
    (work / "crlf.txt").write_bytes(b"a\r\nb\r\n")
    out = await call(ReadTool(READONLY), work, path="crlf.txt")
    assert out.content == "    1\ta\n    2\tb\n[crlf.txt: lines 1-2 of 2]"


async def test_read_output_limit_says_where_to_continue(work: Path, numbered: Path) -> None:
    """When the character limit cuts the window, the footer says where to go on."""
    out = await call(ReadTool(attrs.evolve(READONLY, max_output_chars=60)), work, path="lines.txt")
    assert "output limit reached, continue with start_line=" in out.content
    assert len(out.content.splitlines()) < 10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"path": "missing.txt"}, "does not exist"),
        ({"path": "src"}, "is a directory"),
        ({"path": "bin.dat"}, "binary file"),
        ({"path": "lines.txt", "start_line": 500}, "past the end"),
        ({"path": "lines.txt", "start_line": 5, "end_line": 2}, "before start_line"),
        ({"path": "lines.txt", "start_line": 0}, "at least 1"),
        ({"path": "../outside.txt"}, "escapes the working directory"),
        ({"path": "/etc/hostname"}, "outside the working directory"),
        ({}, "'path' is required"),
        ({"path": ["x"]}, "must be a string"),
    ],
)
async def test_read_errors(work: Path, numbered: Path, args: dict[str, Any], message: str) -> None:
    """Every bad read is an error result with a clear message."""
    out = await ReadTool(READONLY).handle(args, ctx_for(work))
    assert isinstance(out, ToolOutput)
    assert out.is_error
    assert message in out.content


async def test_read_unconfined_profile_reads_outside(work: Path, tmp_path: Path) -> None:
    """Without confinement, absolute paths elsewhere are readable."""
    (tmp_path / "elsewhere.txt").write_text("far\n")
    out = await call(ReadTool(UNRESTRICTED), work, path=str(tmp_path / "elsewhere.txt"))
    assert "far" in out.content


# --- grep ------------------------------------------------------------------------

ENGINES = [
    pytest.param(
        True,
        id="ripgrep",
        marks=pytest.mark.skipif(shutil.which("rg") is None, reason="ripgrep not installed"),
    ),
    pytest.param(False, id="python"),
]


@pytest.mark.parametrize("use_rg", ENGINES)
async def test_grep_finds_matches_sorted(work: Path, use_rg: bool) -> None:
    """Matches come as path:line:content, sorted; .git and binary files are skipped."""
    out = await call(GrepTool(READONLY, use_ripgrep=use_rg), work, pattern="foo")
    assert out.content.splitlines() == [
        ".hidden/h.txt:1:a foo here",
        "README.md:2:food",
        "src/a.py:1:def foo():",
        "src/sub/b.py:1:foo = 2",
    ]
    assert out.metadata["engine"] == ("ripgrep" if use_rg else "python")


@pytest.mark.parametrize("use_rg", ENGINES)
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"pattern": "foo", "case_insensitive": True}, ["README.md:1:Foo and bar"]),
        ({"pattern": "foo", "glob": "*.py"}, ["src/a.py:1:def foo():", "src/sub/b.py:1:foo = 2"]),
        ({"pattern": "foo", "glob": "src/*.py"}, ["src/a.py:1:def foo():"]),
        ({"pattern": "foo", "glob": "**/sub/*.py"}, ["src/sub/b.py:1:foo = 2"]),
        ({"pattern": "o", "path": "src/sub"}, ["src/sub/b.py:1:foo = 2"]),
        ({"pattern": "^bar", "path": "src/sub/b.py"}, ["src/sub/b.py:2:bar = 3"]),
        ({"pattern": r"return \d"}, ["src/a.py:2:    return 1"]),
    ],
)
async def test_grep_filters(
    work: Path, use_rg: bool, args: dict[str, Any], expected: list[str]
) -> None:
    """Case folding, globs and paths narrow the search the same way in both engines."""
    out = await GrepTool(READONLY, use_ripgrep=use_rg).handle(args, ctx_for(work))
    assert isinstance(out, ToolOutput)
    lines = out.content.splitlines()
    for line in expected:
        assert line in lines
    if "case_insensitive" not in args:
        assert lines == expected


@pytest.mark.parametrize("use_rg", ENGINES)
async def test_grep_limits_and_misses(work: Path, use_rg: bool) -> None:
    """max_results caps the list with a note; no match is a plain answer."""
    tool = GrepTool(READONLY, use_ripgrep=use_rg)
    out = await call(tool, work, pattern="foo", max_results=1)
    assert out.content.splitlines() == [
        ".hidden/h.txt:1:a foo here",
        "[showing 1 of 4 matches; narrow the search with 'path' or 'glob', or raise max_results]",
    ]
    out = await call(tool, work, pattern="zzz")
    assert not out.is_error
    assert out.content == "No matches for 'zzz'."


@pytest.mark.parametrize("use_rg", ENGINES)
async def test_grep_errors(work: Path, use_rg: bool) -> None:
    """Bad patterns, missing paths and escapes are error results."""
    tool = GrepTool(READONLY, use_ripgrep=use_rg)
    assert (await call(tool, work, pattern="(unclosed")).is_error
    assert "does not exist" in (await call(tool, work, pattern="x", path="nope")).content
    assert "escapes" in (await call(tool, work, pattern="x", path="..")).content
    assert (await call(tool, work, pattern="")).is_error


@pytest.mark.skipif(shutil.which("rg") is None, reason="ripgrep not installed")
async def test_grep_engines_agree(work: Path) -> None:
    """ripgrep and the Python fallback give identical results."""
    for args in (
        {"pattern": "o"},
        {"pattern": "[ab]", "case_insensitive": True},
        {"pattern": "o", "glob": "*.{md,txt}"},
        {"pattern": ".", "max_results": 3},
    ):
        rg = await GrepTool(READONLY, use_ripgrep=True).handle(args, ctx_for(work))
        py = await GrepTool(READONLY, use_ripgrep=False).handle(args, ctx_for(work))
        assert isinstance(rg, ToolOutput) and isinstance(py, ToolOutput)
        assert rg.content == py.content, args


# --- glob ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"pattern": "**/*.py"}, ["src/a.py", "src/sub/b.py"]),
        ({"pattern": "*.md"}, ["README.md"]),
        ({"pattern": "src/*.py"}, ["src/a.py"]),
        ({"pattern": "src/**/b.py"}, ["src/sub/b.py"]),
        ({"pattern": "*.py", "path": "src/sub"}, ["src/sub/b.py"]),
        ({"pattern": "**/*.{md,txt}"}, [".hidden/h.txt", "README.md"]),
        ({"pattern": "**/config"}, []),
    ],
)
async def test_glob_patterns(work: Path, args: dict[str, Any], expected: list[str]) -> None:
    """Globs match relative paths with ** across directories; .git is skipped."""
    out = await GlobTool(READONLY).handle(args, ctx_for(work))
    assert isinstance(out, ToolOutput)
    if expected:
        assert out.content.splitlines() == expected
    else:
        assert out.content.startswith("No files match")


async def test_glob_cap_and_errors(work: Path) -> None:
    """Results are capped with a note; escaping patterns and paths are refused."""
    out = await call(GlobTool(READONLY), work, pattern="**/*", max_results=2)
    assert out.content.splitlines()[-1].startswith("[showing 2 of ")
    assert (await call(GlobTool(READONLY), work, pattern="../*")).is_error
    assert (await call(GlobTool(READONLY), work, pattern="*", path="..")).is_error
    assert (await call(GlobTool(READONLY), work, pattern="*", path="README.md")).is_error


# --- list ------------------------------------------------------------------------


async def test_list_shows_types_and_sizes(work: Path) -> None:
    """Directories end with '/', files show sizes, symlinks show targets."""
    (work / "link").symlink_to("src")
    out = await call(ListTool(READONLY), work)
    assert out.content.splitlines() == [
        "./",
        "  .git/",
        "  .hidden/",
        "  README.md  (17 B)",
        "  bin.dat  (12 B)",
        "  link -> src",
        "  src/",
    ]


async def test_list_depth(work: Path) -> None:
    """depth lists nested directories, but never expands .git."""
    out = await call(ListTool(READONLY), work, depth=3)
    lines = out.content.splitlines()
    assert "    sub/" in lines
    assert "      b.py  (16 B)" in lines
    assert "  .git/" in lines
    assert not any("config" in line for line in lines)


async def test_list_errors(work: Path) -> None:
    """Listing a file, a missing path or an outside path is an error result."""
    assert "not a directory" in (await call(ListTool(READONLY), work, path="README.md")).content
    assert "does not exist" in (await call(ListTool(READONLY), work, path="nope")).content
    assert (await call(ListTool(READONLY), work, path="/")).is_error


# --- write -----------------------------------------------------------------------


async def test_write_off_refuses(work: Path) -> None:
    """Under file_write: off nothing is written."""
    out = await call(WriteTool(READONLY), work, path="new.txt", content="x")
    assert out.is_error
    assert "disabled" in out.content
    assert not (work / "new.txt").exists()


async def test_write_create_only(work: Path) -> None:
    """create-only makes new files (and their directories) but never overwrites."""
    tool = WriteTool(attrs.evolve(READONLY, file_write="create-only"))
    out = await call(tool, work, path="new/dir/f.txt", content="hello\nworld")
    assert not out.is_error
    assert out.content == "Created new/dir/f.txt (11 bytes, 2 lines)"
    assert (work / "new/dir/f.txt").read_text() == "hello\nworld"
    out = await call(tool, work, path="README.md", content="clobbered")
    assert out.is_error
    assert "already exists" in out.content
    assert (work / "README.md").read_text().startswith("Foo")


async def test_write_full_overwrites(work: Path) -> None:
    """full replaces existing files byte for byte."""
    out = await call(WriteTool(DEV), work, path="README.md", content="new\r\n")
    assert out.content.startswith("Overwrote README.md")
    assert (work / "README.md").read_bytes() == b"new\r\n"


async def test_write_is_confined(work: Path, tmp_path: Path) -> None:
    """Writes outside the working directory are refused, also through symlinks."""
    (work / "out").symlink_to(tmp_path)
    for path in ("../escape.txt", "out/escape.txt", str(tmp_path / "escape.txt")):
        out = await call(WriteTool(DEV), work, path=path, content="x")
        assert out.is_error, path
    assert not (tmp_path / "escape.txt").exists()
    assert (await call(WriteTool(DEV), work, path="src", content="x")).is_error


# --- edit ------------------------------------------------------------------------


async def test_edit_replaces_unique_match(work: Path) -> None:
    """A unique old_string is replaced and the rest of the file is untouched."""
    out = await call(
        EditTool(DEV), work, path="src/a.py", old_string="return 1", new_string="return 2"
    )
    assert out.content == "Replaced 1 occurrence in src/a.py"
    assert (work / "src/a.py").read_text() == "def foo():\n    return 2\n"


async def test_edit_counts_missing_and_repeated_matches(work: Path) -> None:
    """Zero or several matches are errors that say how many."""
    (work / "r.txt").write_text("x x x\n")
    out = await call(EditTool(DEV), work, path="r.txt", old_string="y", new_string="z")
    assert out.is_error and "0 matches" in out.content
    out = await call(EditTool(DEV), work, path="r.txt", old_string="x", new_string="z")
    assert out.is_error and "occurs 3 times" in out.content
    assert (work / "r.txt").read_text() == "x x x\n"
    out = await call(
        EditTool(DEV), work, path="r.txt", old_string="x", new_string="z", replace_all=True
    )
    assert out.content == "Replaced 3 occurrences in r.txt"
    assert (work / "r.txt").read_text() == "z z z\n"


async def test_edit_preserves_crlf(work: Path) -> None:
    """Line endings outside the edit are kept as they were."""
    (work / "w.txt").write_bytes(b"a\r\nb\r\n")
    await call(EditTool(DEV), work, path="w.txt", old_string="b", new_string="c")
    assert (work / "w.txt").read_bytes() == b"a\r\nc\r\n"


@pytest.mark.parametrize(
    ("profile", "args", "message"),
    [
        (
            attrs.evolve(DEV, file_write="create-only"),
            {"old_string": "a", "new_string": "b"},
            "not allowed",
        ),
        (DEV, {"old_string": "", "new_string": "b"}, "must not be empty"),
        (DEV, {"old_string": "a", "new_string": "a"}, "identical"),
        (DEV, {"path": "nope.txt", "old_string": "a", "new_string": "b"}, "does not exist"),
        (DEV, {"path": "bin.dat", "old_string": "a", "new_string": "b"}, "not valid UTF-8"),
        (DEV, {"path": "../x", "old_string": "a", "new_string": "b"}, "escapes"),
    ],
)
async def test_edit_errors(
    work: Path, profile: PermissionProfile, args: dict[str, Any], message: str
) -> None:
    """Edits that cannot or may not happen are error results."""
    (work / "bin.dat").write_bytes(b"\xff\xfe a")
    out = await EditTool(profile).handle({"path": "src/a.py", **args}, ctx_for(work))
    assert isinstance(out, ToolOutput)
    assert out.is_error
    assert message in out.content


# --- sqlite ----------------------------------------------------------------------


@pytest.fixture
def database(work: Path) -> Path:
    path = work / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data BLOB)")
    conn.executemany("INSERT INTO t (name, data) VALUES (?, ?)", [("a", b"xy"), ("b", None)])
    conn.commit()
    conn.close()
    return path


def row_count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        conn.close()


async def test_sqlite_query_table(work: Path, database: Path) -> None:
    """Query results come back as a compact table."""
    out = await call(SqliteTool(READONLY), work, database="app.db", sql="SELECT * FROM t")
    assert out.content.splitlines() == [
        "id | name | data",
        "---+------+---------------",
        "1  | a    | <blob 2 bytes>",
        "2  | b    | NULL",
        "(2 rows)",
    ]


async def test_sqlite_row_cap(work: Path, database: Path) -> None:
    """max_rows caps the rows and says more exist."""
    out = await call(
        SqliteTool(READONLY), work, database="app.db", sql="SELECT id FROM t", max_rows=1
    )
    assert out.content.splitlines()[-1].startswith("(1 row shown; more rows exist")


async def test_sqlite_list_and_describe(work: Path, database: Path) -> None:
    """list_tables and describe show the schema."""
    out = await call(SqliteTool(READONLY), work, database="app.db", operation="list_tables")
    assert out.content == "t (table)"
    out = await call(SqliteTool(READONLY), work, database="app.db", operation="describe", table="t")
    assert "name   | TEXT    | True" in out.content
    assert "CREATE TABLE t" in out.content
    out = await call(SqliteTool(READONLY), work, database="app.db", operation="describe", table="x")
    assert out.is_error


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM t",
        "UPDATE t SET name = 'z'",
        "INSERT INTO t (name) VALUES ('c')",
        "DROP TABLE t",
        "WITH x AS (SELECT 1) DELETE FROM t",
        "WITH x AS (SELECT 1) INSERT INTO t (name) SELECT 'c' FROM x",
        "CREATE TABLE u (x)",
        "CREATE TEMP TABLE u (x)",
        "PRAGMA query_only=OFF",
        "PRAGMA user_version=5",
        "REPLACE INTO t (id, name) VALUES (1, 'z')",
    ],
)
async def test_sqlite_readonly_is_enforced_by_sqlite(work: Path, database: Path, sql: str) -> None:
    """Whatever the SQL looks like, a read-only database is not changed."""
    out = await call(SqliteTool(READONLY), work, database="app.db", sql=sql)
    assert out.is_error
    assert "read-only" in out.content
    follow_up = await call(SqliteTool(READONLY), work, database="app.db", sql="DELETE FROM t")
    assert follow_up.is_error
    assert row_count(database) == 2


@pytest.mark.parametrize("profile", [READONLY, DEV], ids=["readonly", "mutations"])
@pytest.mark.parametrize(
    "sql", ["ATTACH 'other.db' AS o", "VACUUM INTO 'copy.db'", "SELECT load_extension('x')"]
)
async def test_sqlite_cannot_reach_other_files(
    work: Path, database: Path, profile: PermissionProfile, sql: str
) -> None:
    """ATTACH, VACUUM INTO and extensions are refused in every mode: they escape confinement."""
    out = await call(SqliteTool(profile), work, database="app.db", sql=sql)
    assert out.is_error
    assert not (work / "other.db").exists()
    assert not (work / "copy.db").exists()


async def test_sqlite_one_statement_per_call(work: Path, database: Path) -> None:
    """A second statement is an error, so nothing can ride along after a SELECT."""
    out = await call(SqliteTool(DEV), work, database="app.db", sql="SELECT 1; DELETE FROM t")
    assert out.is_error
    assert row_count(database) == 2


async def test_sqlite_mutations_mode_changes_data(work: Path, database: Path) -> None:
    """With database: mutations, statements change the database."""
    out = await call(SqliteTool(DEV), work, database="app.db", sql="DELETE FROM t WHERE id = 1")
    assert out.content == "OK (1 row changed)"
    assert row_count(database) == 1


async def test_sqlite_time_limit(work: Path, database: Path) -> None:
    """A runaway query is stopped at the time limit."""
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    started = time.monotonic()
    out = await call(SqliteTool(READONLY, timeout=0.2), work, database="app.db", sql=endless)
    assert time.monotonic() - started < 5
    assert out.is_error
    assert "time limit" in out.content


async def test_sqlite_cancellation_is_prompt(work: Path, database: Path) -> None:
    """Cancelling a running query returns at once."""
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    )
    started = time.monotonic()
    with trio.move_on_after(0.2):
        await call(SqliteTool(READONLY), work, database="app.db", sql=endless)
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"database": "missing.db", "sql": "SELECT 1"}, "does not exist"),
        ({"database": "../x.db", "sql": "SELECT 1"}, "escapes"),
        ({"database": "app.db"}, "'sql' is required"),
        ({"database": "app.db", "operation": "drop"}, "'operation' must be"),
        ({"database": "app.db", "operation": "describe"}, "'table' is required"),
        ({"database": "app.db", "sql": "SELEC 1"}, "syntax error"),
        ({"database": "README.md", "sql": "SELECT * FROM t"}, "not a database"),
    ],
)
async def test_sqlite_errors(
    work: Path, database: Path, args: dict[str, Any], message: str
) -> None:
    """Bad requests are error results with clear messages."""
    out = await SqliteTool(READONLY).handle(args, ctx_for(work))
    assert isinstance(out, ToolOutput)
    assert out.is_error
    assert message in out.content


# --- the set of tools --------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "names"),
    [
        (READONLY, ["read", "grep", "glob", "list", "bash", "sqlite"]),
        (DEVELOPER, ["read", "grep", "glob", "list", "bash", "write", "edit", "sqlite"]),
        (attrs.evolve(READONLY, shell="off", file_write="create-only"),
         ["read", "grep", "glob", "list", "write", "sqlite"]),
        (attrs.evolve(DEVELOPER, tools=["read", "edit"]), ["read", "edit"]),
    ],
)  # fmt: skip
def test_builtin_tools_follow_the_profile(profile: PermissionProfile, names: list[str]) -> None:
    """builtin_tools offers exactly the tools the profile enables, in a stable order."""
    tools = builtin_tools(profile)
    assert [t.name for t in tools] == names
    assert all(isinstance(t, ToolHandler) for t in tools)


def test_tool_flags_follow_the_profile() -> None:
    """readonly and requires_approval reflect the profile."""
    by_name = {t.name: t for t in builtin_tools(DEVELOPER)}
    assert by_name["read"].readonly and not by_name["read"].requires_approval
    assert by_name["write"].requires_approval and by_name["edit"].requires_approval
    assert not by_name["bash"].requires_approval  # decided per call by needs_approval
    assert not by_name["bash"].readonly and not by_name["sqlite"].readonly
    ro = {t.name: t for t in builtin_tools(READONLY)}
    assert ro["bash"].readonly and ro["sqlite"].readonly
    assert all(t.requires_approval for t in builtin_tools(attrs.evolve(READONLY, approval="all")))
    for tool in builtin_tools(DEVELOPER):
        schema: Mapping[str, Any] = tool.parameters
        assert schema["type"] == "object"
        assert set(schema.get("required", [])) <= set(schema["properties"])
        assert tool.description


async def test_no_tool_raises_on_garbage(work: Path) -> None:
    """Every tool turns nonsense arguments into an error result."""
    garbage: dict[str, Any] = {
        "path": 5, "command": [], "pattern": None, "content": 1, "database": {},
        "old_string": 2, "new_string": 3, "depth": "deep", "max_results": True,
    }  # fmt: skip
    for tool in builtin_tools(UNRESTRICTED):
        out = await tool.handle(garbage, ctx_for(work))
        assert isinstance(out, ToolOutput)
        assert out.is_error, tool.name


def test_tools_package_exports() -> None:
    """rho_actors.tools exports exactly the tool classes and builtin_tools."""
    import rho_actors.tools as package

    assert sorted(package.__all__) == sorted(
        [
            *("BashTool", "EditTool", "GlobTool", "GrepTool", "ListTool", "ReadTool"),
            *("SqliteTool", "WriteTool", "builtin_tools"),
        ]
    )
    for name in package.__all__:
        assert getattr(package, name) is not None


def test_a_function_tool_is_derived_once_per_function_and_options() -> None:
    """Building many agents with the same typed tool reuses its schema (construction cost)."""

    async def lookup(key: str, limit: int = 3) -> str:
        """Look a key up.

        Args:
            key: What to look up.
            limit: At most this many.
        """
        return key

    first = function_tool(lookup)
    assert function_tool(lookup) is first
    assert function_tool(lookup, requires_approval=True) is not first
    assert function_tool(lookup, requires_approval=True).requires_approval
    registries = [ToolRegistry() for _ in range(3)]
    tools = [r.register(lookup) for r in registries]
    assert all(t is first for t in tools)
    assert first.parameters["properties"]["limit"] == {
        "type": "integer",
        "description": "At most this many.",
        "default": 3,
    }
