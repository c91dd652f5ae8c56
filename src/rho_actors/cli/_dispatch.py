"""``rho-actors dispatch FILE``: many prompts at once, through ``fan_out``.

The tasks are checked before anything runs (see ``_tasks``). Tasks that
share a profile, working directory and model share one Agent; all runs
share one supervisor, so one Registry, one Store and one set of connection
pools. Results are written to ``--output`` as each run finishes, so an
interrupted dispatch keeps what it finished.

Ctrl-C cancels every run in flight through one ``CancellationToken`` and
stops handing out new tasks; the runs end ``cancelled``, their records are
written, and the summary says what finished and what never started.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import trio
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TimeElapsedColumn,
)
from rich.progress import Task as ProgressTask
from rich.table import Table
from rich.text import Text

from .._agent import Agent
from .._cancel import CancellationToken
from .._config import AgentConfig
from .._errors import ConfigError
from .._fanout import Job, JobResult, fan_out
from .._session_store import SessionStore
from .._workers import QueuedRun, enqueue
from ._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    UsageError,
    build_agent,
    config_from_flags,
    existing_dir,
    one_line,
    open_store,
    output_path,
    plural,
    run_timeout,
)
from ._tasks import Task, load_tasks
from ._terminal import INTERRUPT_REASON, Terminal, open_terminal

AgentKey = tuple[str | None, str | None, str | None]
Writer = Callable[[dict[str, Any]], Awaitable[None]]
# How many finished ids an interrupted dispatch lists by name.
FINISHED_SHOWN = 20


@attrs.define(kw_only=True)
class Tally:
    """How the dispatch is going; read by the progress display while it runs."""

    total: int
    concurrency: int
    # Each run's deadline (--timeout), None: none.
    run_timeout: float | None = None
    started: int = 0
    done: int = 0
    tokens: int = 0
    by_status: collections.Counter[str] = attrs.field(factory=collections.Counter)
    completed_ids: set[str] = attrs.field(factory=set)
    interrupted: bool = False
    stopped_early: bool = False
    # The error every finished run failed with so far (None once one differs).
    failures_seen: str | None = None
    seconds: float = 0.0

    @property
    def running(self) -> int:
        # A task is taken from the file only once a slot is free for it.
        return self.started - self.done

    def eta(self, elapsed: float) -> float | None:
        """Seconds left at the throughput so far (None before the first result).

        The whole run's average, not a short window: with N runs in flight
        results come in waves, and a window that just saw a wave would
        promise the rest in a second.
        """
        if self.done == 0 or elapsed <= 0:
            return None
        return (self.total - self.done) * elapsed / self.done

    @property
    def failed(self) -> int:
        return self.done - self.by_status["completed"] - self.by_status["cancelled"]

    def add(self, record: dict[str, Any]) -> None:
        self.done += 1
        self.by_status[record["status"]] += 1
        self.tokens += int(record["usage"].get("total_tokens", 0))
        if record["status"] == "completed":
            self.completed_ids.add(record["id"])


def main(args: argparse.Namespace) -> int:
    if args.no_store and args.store:
        raise UsageError("--no-store and --store: expected one or the other")
    if args.no_store and args.output is None:
        print(
            "warning: --no-store without --output keeps no answer: each run's text is "
            "discarded when it finishes (add --output FILE.jsonl)",
            file=sys.stderr,
        )
    path = Path(args.file)
    tasks = load_tasks(path)
    agents = agents_for(tasks, config_from_flags(args), path.parent)
    store = None if args.no_store else open_store(args)
    output = output_path(args.output)
    tally = Tally(total=len(tasks), concurrency=args.concurrency, run_timeout=run_timeout(args))
    if store is not None and hasattr(store.backend, "claim") and not args.local:
        # A database store: the workers run the tasks (rho-actors worker).
        trio.run(_enqueue_all, tasks, agents, store, output, tally, args.wait)
        if not args.wait:
            return EXIT_OK
    else:
        trio.run(_dispatch, tasks, agents, store, output, tally)
    _print_summary(Console(highlight=False), tally, output, [task.id for task in tasks])
    if tally.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if tally.by_status["completed"] == tally.total else EXIT_ERROR


def agents_for(tasks: list[Task], base: AgentConfig, task_dir: Path) -> dict[AgentKey, Agent]:
    """One Agent per distinct (profile, working_dir, model); errors name the first task using it.

    A relative ``working_dir`` is relative to the task file, so a task file
    means the same thing wherever it is run from.
    """
    agents: dict[AgentKey, Agent] = {}
    for task in tasks:
        if task.agent_key in agents:
            continue
        changes: dict[str, Any] = {}
        if task.profile is not None:
            changes["profile"] = task.profile
        if task.model is not None:
            changes["model"] = task.model
        if task.working_dir is not None:
            where = f"{task.where}: field 'working_dir'"
            changes["working_dir"] = str(existing_dir(str(task_dir / task.working_dir), where))
        try:
            agents[task.agent_key] = build_agent(attrs.evolve(base, **changes))
        except ConfigError as exc:
            raise UsageError(f"{task.where}: {exc}") from exc
    return agents


async def _dispatch(
    tasks: list[Task],
    agents: dict[AgentKey, Agent],
    store: SessionStore | None,
    output: Path | None,
    tally: Tally,
) -> None:
    token = CancellationToken()

    async def cancel() -> None:
        token.cancel(INTERRUPT_REASON)

    started = time.perf_counter()
    async with open_terminal() as term, _results_file(output) as write:
        with _progress(term, tally) as progress, term.interrupts.cancelling(cancel):
            bar = progress.add_task("dispatch", total=tally.total)
            jobs = _jobs(tasks, agents, token, tally)
            async with fan_out(
                jobs,
                concurrency=tally.concurrency,
                store=store,
                token=token,
                run_timeout=tally.run_timeout,
            ) as results:
                async for done in results:
                    record = job_record(done)
                    await write(record)
                    tally.add(record)
                    progress.update(bar, completed=tally.done)
                    _report_problem(term, record)
                    same = _same_failure(tally, record)
                    if same is not None and not token.is_cancelled():
                        # The endpoint or the config is wrong, not the tasks:
                        # fifty identical error lines would say nothing more.
                        term.note(
                            f"stopping: the first {SAME_FAILURE_LIMIT} runs all failed the same "
                            f"way ({same}); fix that and run again",
                            style="red bold",
                        )
                        tally.stopped_early = True
                        token.cancel("every run failed the same way")
        tally.interrupted = token.is_cancelled() and not tally.stopped_early
    tally.seconds = time.perf_counter() - started


# Finished runs that, all failing with one and the same error and none
# succeeding, stop a dispatch early.
SAME_FAILURE_LIMIT = 5


def _same_failure(tally: Tally, record: dict[str, Any]) -> str | None:
    """The shared error, once the first SAME_FAILURE_LIMIT runs all failed with it."""
    if record["status"] in ("completed", "cancelled"):
        tally.failures_seen = None
        return None
    # "The same way": the same message once numbers (request ids, counts) are
    # set aside.
    error = re.sub(r"\d+", "#", str(record["error"]))
    if tally.done == 1:
        tally.failures_seen = error
    elif tally.failures_seen != error:
        tally.failures_seen = None
    if tally.failures_seen is not None and tally.done == SAME_FAILURE_LIMIT:
        return str(record["error"])
    return None


async def _enqueue_all(
    tasks: list[Task],
    agents: dict[AgentKey, Agent],
    store: SessionStore,
    output: Path | None,
    tally: Tally,
    wait: bool,
) -> None:
    """Queue every task for the store's workers; with ``wait``, follow them to the end.

    Ctrl-C while waiting stops the waiting, not the runs: they stay queued
    or running on the workers, and their results stay in the store.
    """
    started = time.perf_counter()
    queued: dict[str, QueuedRun] = {}
    for task in tasks:
        queued[task.id] = await enqueue(store, task.prompt, agent=agents[task.agent_key])
    tally.started = len(queued)
    console = Console(highlight=False, stderr=True)
    console.print(
        f"queued {plural(len(queued), 'run')} in {store.location}; "
        "`rho-actors worker --store ...` runs them"
    )
    if not wait:
        return
    token = CancellationToken()

    async def cancel() -> None:
        token.cancel(INTERRUPT_REASON)

    async with open_terminal() as term, _results_file(output) as write:
        with _progress(term, tally) as progress, term.interrupts.cancelling(cancel):
            bar = progress.add_task("dispatch", total=tally.total)
            pending = dict(queued)
            while pending and not token.is_cancelled():
                for task_id, run in list(pending.items()):
                    result = await run.result()
                    if result is None or await run.status() not in ("done", "cancelled"):
                        continue
                    del pending[task_id]
                    record = {
                        "id": task_id,
                        "status": result.get("status", "error"),
                        "text": result.get("text") or "",
                        "usage": result.get("usage") or {},
                        "error": result.get("error") or result.get("cancel_reason"),
                        "seconds": round(time.perf_counter() - started, 3),
                        "session_id": run.session_id,
                    }
                    await write(record)
                    tally.add(record)
                    progress.update(bar, completed=tally.done)
                    _report_problem(term, record)
                if pending:
                    await trio.sleep(0.5)
        tally.interrupted = token.is_cancelled()
    tally.seconds = time.perf_counter() - started


def _jobs(
    tasks: list[Task], agents: dict[AgentKey, Agent], token: CancellationToken, tally: Tally
) -> Iterator[Job]:
    """The jobs, handed out lazily; none once the token is cancelled (Ctrl-C)."""
    for task in tasks:
        if token.is_cancelled():
            return
        tally.started += 1
        yield Job(prompt=task.prompt, agent=agents[task.agent_key], key=task.id)


def job_record(done: JobResult) -> dict[str, Any]:
    """One line of ``--output``: what the task produced and why it did not complete."""
    result = done.result
    error: str | None = None
    if done.error is not None:
        error = f"{type(done.error).__name__}: {done.error}"
    elif result is not None:
        error = result.error or result.cancel_reason
    return {
        "id": done.key,
        "status": done.status,
        "text": result.text if result is not None else "",
        "usage": result.usage if result is not None else {},
        "error": error,
        "seconds": round(done.seconds, 3),
        "session_id": done.session_id,
    }


def _report_problem(term: Terminal, record: dict[str, Any]) -> None:
    """Failures are worth a line each; successes only count."""
    if record["status"] in ("completed", "cancelled"):
        return
    term.note(f"✗ {record['id']}: {record['status']}: {record['error']}", style="red")


@contextlib.asynccontextmanager
async def _results_file(path: Path | None) -> AsyncIterator[Writer]:
    """A JSONL writer that flushes each line: a crash keeps every finished result."""
    if path is None:

        async def discard(record: dict[str, Any]) -> None:
            pass

        yield discard
        return
    async with await trio.open_file(path, "w", encoding="utf-8") as file:

        async def write(record: dict[str, Any]) -> None:
            await file.write(json.dumps(record, ensure_ascii=False) + "\n")
            await file.flush()

        yield write


class _TallyColumn(ProgressColumn):
    """running · failed · tokens, read from the tally at each refresh (so between results too)."""

    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self._tally = tally

    def render(self, task: ProgressTask) -> Text:
        tally = self._tally
        text = Text.assemble(
            (f"{tally.running} running", "cyan"),
            " · ",
            (f"{tally.failed} failed", "red" if tally.failed else ""),
            " · ",
            f"{tally.tokens:,} tok",
        )
        text.no_wrap = True
        return text


class _EtaColumn(ProgressColumn):
    """Time left at the dispatch's average throughput; "ETA ?" until a run finished."""

    def __init__(self, tally: Tally) -> None:
        super().__init__()
        self._tally = tally

    def render(self, task: ProgressTask) -> Text:
        eta = self._tally.eta(task.elapsed or 0.0)
        if eta is None or task.finished:
            return Text("ETA ?" if not task.finished else "", style="progress.remaining")
        minutes, seconds = divmod(int(eta + 0.5), 60)
        hours, minutes = divmod(minutes, 60)
        shown = f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"
        return Text(f"ETA ~{shown}", style="progress.remaining")


def _progress(term: Terminal, tally: Tally) -> Progress:
    return Progress(
        SpinnerColumn(),
        BarColumn(bar_width=10),
        MofNCompleteColumn(),
        _TallyColumn(tally),
        TimeElapsedColumn(),
        _EtaColumn(tally),
        console=term.err,
    )


def _print_summary(
    console: Console, tally: Tally, output: Path | None, task_ids: list[str]
) -> None:
    table = Table(title="dispatch", title_justify="left")
    table.add_column("status")
    table.add_column("tasks", justify="right")
    for status, count in sorted(tally.by_status.items()):
        table.add_row(status, str(count))
    not_started = tally.total - tally.started
    if not_started:
        table.add_row("not started", str(not_started))
    table.add_row("tokens", f"{tally.tokens:,}")
    table.add_row("seconds", f"{tally.seconds:.1f}")
    console.print(table)
    if tally.interrupted:
        finished = [task_id for task_id in task_ids if task_id in tally.completed_ids]
        _print_interrupted(console, tally, finished, not_started)
    if output is not None:
        console.print(f"results: {output}")


def _print_interrupted(console: Console, tally: Tally, ids: list[str], not_started: int) -> None:
    """What finished, by id in the file's order: what a rerun can leave out."""
    shown = ", ".join(ids[:FINISHED_SHOWN]) + (" …" if len(ids) > FINISHED_SHOWN else "")
    console.print(
        f"interrupted: {plural(len(ids), 'task')} finished"
        + (f" ({one_line(shown, 400)})" if ids else "")
        + f", {tally.by_status['cancelled']} cancelled, {not_started} not started"
    )
