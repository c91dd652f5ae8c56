"""The terminal side of a command: output streams, stdin, approvals, Ctrl-C.

Streams are split the Unix way: what the model says goes to stdout (so
``rho-actors run ... > answer.txt`` keeps just the answer) and everything
about the run (tool activity, approvals, the final status) goes to stderr.
Both are flushed as they are written, so a pipe sees the run as it happens.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import trio
from rich.console import Console
from rich.text import Text

from .._events import AgentEvent, RunResult
from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, join_nonempty, one_line, plural
from ._interrupts import Interrupts, terminal_settings_restored

INTERRUPT_REASON = "interrupted (Ctrl-C)"
ARGS_PREVIEW = 160


class LineReader:
    """Lines from stdin, read by ``input()`` in a worker thread, one read at a time.

    A read whose caller was cancelled (Ctrl-C at an approval prompt) stays
    outstanding: its line goes to the next caller. Starting a second
    ``input()`` instead would leave two threads racing for the same terminal
    and lose whatever the first one swallowed.
    """

    def __init__(self) -> None:
        self._prompts_in, self._prompts_out = trio.open_memory_channel[str](1)
        self._lines_in, self._lines_out = trio.open_memory_channel[str | None](1)
        self._outstanding = False

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for prompt in self._prompts_out:
            # Abandoned on cancel: input() cannot be interrupted, and the
            # command must be able to leave while it waits.
            line = await trio.to_thread.run_sync(_input, prompt, abandon_on_cancel=True)
            await self._lines_in.send(line)

    async def readline(self, prompt: str) -> str | None:
        """The next line without its newline, or None at end of input."""
        if self._outstanding:
            # The earlier prompt belongs to an abandoned question: show ours.
            sys.stdout.write(prompt)
            sys.stdout.flush()
        else:
            await self._prompts_in.send(prompt)
            self._outstanding = True
        line = await self._lines_out.receive()
        self._outstanding = False
        return line


def _input(prompt: str) -> str | None:
    try:
        return input(prompt)
    except EOFError:
        return None


class Terminal:
    """stdout for the model's words, stderr for the rest, stdin for questions."""

    def __init__(self) -> None:
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.reader = LineReader()
        self.interrupts = Interrupts(lambda message: self.note(message, style="yellow"))
        self._mid_line = False

    def write_text(self, delta: str) -> None:
        """A streamed piece of the model's answer, shown at once."""
        if not delta:
            return
        sys.stdout.write(delta)
        sys.stdout.flush()
        self._mid_line = not delta.endswith("\n")

    def end_line(self) -> None:
        """Finish a half-written line of model text before writing anything else."""
        if self._mid_line:
            sys.stdout.write("\n")
            sys.stdout.flush()
            self._mid_line = False

    def note(self, message: str, *, style: str | None = None) -> None:
        """One line about the run, on stderr."""
        self.end_line()
        self.err.print(Text(message, style=style or ""))

    async def ask(self, prompt: str) -> str | None:
        """A line typed at ``prompt`` (None at end of input)."""
        self.end_line()
        self.err.file.flush()
        # Until Enter is pressed the cursor sits after the prompt; if the
        # question is abandoned (Ctrl-C), the next note starts a new line.
        self._mid_line = bool(prompt)
        line = await self.reader.readline(prompt)
        self._mid_line = False
        return line


@contextlib.asynccontextmanager
async def open_terminal() -> AsyncIterator[Terminal]:
    """A Terminal whose Ctrl-C watcher and stdin reader live for the block.

    The terminal's settings are restored on the way out, however the
    command ends: a line read abandoned by Ctrl-C leaves readline's
    no-echo, character-at-a-time mode in force otherwise, and the shell
    the user returns to would not show what they type.
    """
    term = Terminal()
    with terminal_settings_restored():
        async with trio.open_nursery() as nursery:
            await nursery.start(term.interrupts.watch)
            await nursery.start(term.reader.serve)
            try:
                yield term
            finally:
                nursery.cancel_scope.cancel(reason="command finished")


# --- approvals --------------------------------------------------------------

ApprovalCallback = Callable[[str, dict[str, Any]], Awaitable[bool]]


def approval_callback(term: Terminal, *, assume_yes: bool) -> ApprovalCallback:
    """Ask at the terminal whether a call may run; fail closed when nobody can answer.

    With ``--yes`` every call is approved. Without a terminal on stdin there
    is nobody to ask, so the call is denied (the model is told) rather than
    left waiting for the approval timeout.
    """
    always: set[str] = set()
    interactive = sys.stdin is not None and sys.stdin.isatty()

    async def decide(tool: str, args: dict[str, Any]) -> bool:
        call = f"{tool} {format_args(args)}"
        if assume_yes or tool in always:
            why = "--yes" if assume_yes else f"always for {tool}"
            term.note(f"✓ approved {call} ({why})", style="green")
            return True
        if not interactive:
            term.note(
                f"✗ denied {call}: stdin is not a terminal (pass --yes to approve)",
                style="yellow",
            )
            return False
        return await _ask_approval(term, tool, call, always)

    return decide


async def _ask_approval(term: Terminal, tool: str, call: str, always: set[str]) -> bool:
    while True:
        answer = await term.ask(f"approve {call}? [y]es/[n]o/[a]lways for this tool ")
        if answer is None:
            return False
        match answer.strip().lower():
            case "y" | "yes":
                return True
            case "n" | "no":
                return False
            case "a" | "always":
                always.add(tool)
                return True
        term.note("please answer y, n or a", style="yellow")


def format_args(args: dict[str, Any] | None) -> str:
    """Tool arguments on one short line: a shell command as itself, the rest as JSON."""
    if not args:
        return ""
    if set(args) == {"command"} and isinstance(args["command"], str):
        return one_line("$ " + args["command"], ARGS_PREVIEW)
    return one_line(json.dumps(args, ensure_ascii=False, default=str), ARGS_PREVIEW)


# --- a run, as it happens ----------------------------------------------------


class EventPrinter:
    """The ``on_event`` callback that shows a run live: text, tools, compaction."""

    def __init__(self, term: Terminal) -> None:
        self._term = term
        # Errors already shown, so the status line need not repeat them.
        self.errors: list[str] = []

    def __call__(self, event: AgentEvent) -> None:
        note = self._term.note
        match event.type:
            case "text":
                self._term.write_text(event.content or "")
            case "tool_start":
                note(f"→ {event.tool_name} {format_args(event.tool_args)}", style="cyan")
            case "tool_end":
                note(_tool_end_line(event), style=_tool_end_style(event))
            case "tool_blocked":
                note(f"⊘ {event.tool_name} blocked: {event.content}", style="yellow")
            case "compact_start":
                note("⋯ compacting the conversation", style="magenta")
            case "compact_end":
                note("⋯ compacted: older turns replaced by a summary", style="magenta")
            case "error":
                self.errors.append(event.content or "")
                note(f"error: {event.content}", style="red")
            case "interruption":
                note(f"paused: {event.content}", style="yellow")
            case "retry":
                note(f"… {event.content}", style="yellow")
            case _:
                pass  # approval_request (the callback asks), usage, the final events


def _tool_end_line(event: AgentEvent) -> str:
    meta = event.tool_metadata or {}
    result = event.tool_result or ""
    parts = [f"← {event.tool_name}"]
    if isinstance(meta.get("duration_ms"), int | float):
        parts.append(f"{meta['duration_ms']:.0f} ms")
    if meta.get("is_error"):
        parts.append("error: " + one_line(result, ARGS_PREVIEW))
    else:
        parts.append(plural(len(result.splitlines()), "line"))
    return join_nonempty(parts, "  ")


def _tool_end_style(event: AgentEvent) -> str:
    return "red" if (event.tool_metadata or {}).get("is_error") else "dim"


def describe_result(
    result: RunResult, session_id: str, seconds: float, *, shown_errors: Sequence[str] = ()
) -> str:
    """The one status line after a run: how it ended, and what it cost."""
    match result.status:
        case "completed":
            head = "completed"
        case "cancelled":
            head = f"cancelled: {result.cancel_reason or 'cancelled'}"
        case "paused":
            names = ", ".join(p.tool_name for p in result.pending_approvals)
            head = f"paused: waiting for approval of {names}"
        case _ if result.error in shown_errors:
            head = "error (above)"
        case _:
            head = f"error: {result.error or 'the run failed'}"
    tokens = result.usage.get("total_tokens", 0)
    return join_nonempty(
        [
            head,
            plural(result.turns, "turn"),
            f"{tokens:,} tokens",
            f"{seconds:.1f} s",
            f"session {session_id[:12]}",
        ]
    )


_STATUS_STYLES = {
    "completed": "green",
    "running": "cyan",
    "idle": "dim",
    "cancelled": "yellow",
    "paused": "yellow",
    "interrupted": "yellow",
}


def status_style(status: str) -> str:
    """Green for done, yellow for stopped on purpose, red for everything that went wrong."""
    return _STATUS_STYLES.get(status, "red")


def exit_code_for(status: str) -> int:
    """completed → 0, cancelled → 130 (as if stopped by Ctrl-C), anything else → 1."""
    if status == "completed":
        return EXIT_OK
    if status == "cancelled":
        return EXIT_INTERRUPTED
    return EXIT_ERROR
