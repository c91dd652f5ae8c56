"""Fan-out: many prompts (or many agents) at once, with a concurrency limit.

::

    async with fan_out(prompts, agent=agent, concurrency=100) as results:
        async for done in results:          # in completion order
            print(done.index, done.result.status)

* At most ``concurrency`` runs are in flight; the job iterable is consumed
  only as slots free up, so a generator of a million jobs is fine.
* Results are delivered as they complete, through a channel with room for
  ``concurrency`` results: a consumer that stops reading stops new jobs from
  starting (backpressure), it does not buffer without bound.
* Leaving the block cancels whatever is still running (cancel-the-rest).
  Every cancelled run still ends cleanly: its state is valid and its
  records are written.
* :func:`race` returns the first run to complete and cancels the others.

Each job runs in a fresh session under one supervisor, so all runs share the
Registry, the Store and the model connection pools, and each session's
memory is released as soon as its job is done.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ._agent import Agent
from ._cancel import CancellationToken
from ._errors import RhoError
from ._events import RunResult
from ._session import Session
from ._session_store import SessionStore
from ._supervisor import Supervisor, open_supervisor

DEFAULT_CONCURRENCY = 64


@attrs.frozen(kw_only=True, slots=True)
class Job:
    """One prompt to run; ``agent`` overrides the fan-out's default agent."""

    prompt: str
    agent: Agent | None = None
    key: Any = None


@attrs.frozen(kw_only=True, slots=True)
class JobResult:
    """A finished job. ``error`` is set only if the machinery failed (not the run)."""

    index: int
    key: Any
    session_id: str
    result: RunResult | None
    error: BaseException | None
    seconds: float

    @property
    def status(self) -> str:
        return self.result.status if self.result is not None else "error"


def _as_job(item: Job | str) -> Job:
    return item if isinstance(item, Job) else Job(prompt=item)


@asynccontextmanager
async def fan_out(
    jobs: Iterable[Job | str],
    *,
    agent: Agent | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    supervisor: Supervisor | None = None,
    store: SessionStore | None = None,
    token: CancellationToken | None = None,
    run_timeout: float | None = None,
) -> AsyncIterator[trio.MemoryReceiveChannel[JobResult]]:
    """Run ``jobs`` with at most ``concurrency`` in flight; yield a channel of results.

    ``run_timeout`` (seconds) is each run's deadline: a run that takes longer
    ends ``cancelled`` ("deadline exceeded"), the others go on.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if run_timeout is not None and not run_timeout > 0:
        raise ValueError(f"run_timeout must be a positive number of seconds, got {run_timeout}")
    send, receive = trio.open_memory_channel[JobResult](concurrency)
    async with _maybe_supervisor(supervisor, store) as sup, trio.open_nursery() as nursery:
        feed = functools.partial(_feed, run_timeout=run_timeout)
        nursery.start_soon(feed, jobs, agent, concurrency, sup, token, send)
        try:
            async with receive:
                yield receive
        finally:
            nursery.cancel_scope.cancel(reason="fan-out closed: cancelling the rest")


@asynccontextmanager
async def _maybe_supervisor(
    supervisor: Supervisor | None, store: SessionStore | None
) -> AsyncIterator[Supervisor]:
    if supervisor is not None:
        yield supervisor
        return
    async with open_supervisor(store=store) as sup:
        yield sup


async def _feed(
    jobs: Iterable[Job | str],
    agent: Agent | None,
    concurrency: int,
    supervisor: Supervisor,
    token: CancellationToken | None,
    send: trio.MemorySendChannel[JobResult],
    *,
    run_timeout: float | None = None,
) -> None:
    slots = trio.Semaphore(concurrency)
    pending = iter(jobs)
    async with send, trio.open_nursery() as workers:
        for index in itertools.count():
            # A slot first, then the next job: a job is taken only when it can
            # start, and none once the token is cancelled (a Ctrl-C while
            # every slot is busy starts nothing more when they free up).
            await slots.acquire()
            item = None if token is not None and token.is_cancelled() else next(pending, None)
            if item is None:
                slots.release()
                return
            job = _as_job(item)
            job_agent = job.agent or agent
            if job_agent is None:
                raise RhoError(f"job {index} has no agent and fan_out() was given none")
            workers.start_soon(
                _work, index, job, job_agent, supervisor, token, send.clone(), slots, run_timeout
            )


async def _work(
    index: int,
    job: Job,
    agent: Agent,
    supervisor: Supervisor,
    token: CancellationToken | None,
    send: trio.MemorySendChannel[JobResult],
    slots: trio.Semaphore,
    run_timeout: float | None = None,
) -> None:
    started = time.perf_counter()
    session: Session | None = None
    result: RunResult | None = None
    error: BaseException | None = None
    async with send:
        try:
            session = await supervisor.start_session(agent)
            session.run_timeout = run_timeout
            result = await session.run(prompt=job.prompt, token=token)
        except Exception as exc:
            error = exc
        finally:
            if session is not None:
                await supervisor.stop_session(session)
        outcome = JobResult(
            index=index,
            key=job.key if job.key is not None else index,
            session_id=session.id if session is not None else "",
            result=result,
            error=error,
            seconds=time.perf_counter() - started,
        )
        # Hold the slot until the result is taken: backpressure.
        try:
            await send.send(outcome)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the consumer has left
        finally:
            slots.release()


async def race(
    jobs: Iterable[Job | str],
    *,
    agent: Agent | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    supervisor: Supervisor | None = None,
) -> JobResult:
    """The first job to complete successfully; every other run is cancelled.

    If none completes, the last result is returned (so its status and error
    say why).
    """
    last: JobResult | None = None
    async with fan_out(
        jobs, agent=agent, concurrency=concurrency, supervisor=supervisor
    ) as results:
        async for done in results:
            last = done
            if done.status == "completed":
                return done
    if last is None:
        raise RhoError("race() was given no jobs")
    return last
