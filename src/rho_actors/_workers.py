"""Workers: processes that share one database store and run the runs queued in it.

Any process may queue a run (:func:`enqueue`); each worker
(:func:`serve_worker`, ``rho-actors worker``) is a supervisor that claims
queued runs up to its capacity and runs them. All coordination goes through
the database, nothing else:

* **Claiming.** A claim takes queued runs whose sessions nobody hosts, with
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers claim side by side;
  a full cluster leaves runs queued, never drops them.
* **Leases.** Claiming a run leases its session to the worker: a row with an
  owner, an expiry and a generation. A session is hosted by at most one
  process at a time; heartbeats extend the leases of a live worker.
* **Failover.** A worker killed with ``kill -9`` stops heart-beating; once
  its leases expire (``lease_seconds``, 10 by default) its runs are queued
  again and another worker takes them, resuming the session by the usual
  recovery rules (answered tool calls kept, unanswered ones closed).
* **Fencing.** Every append of a leased session checks, in its transaction,
  that the lease is still this process's at the generation it took: a
  worker that stalled past its expiry (and whose session another worker now
  hosts) can no longer write, and its result is not recorded.
* **Exactly one result.** A run's result is recorded only by the worker
  that still holds the run, so every queued run ends with one recorded
  result (a model call may be repeated after a crash).

Cancels reach the worker hosting the session through the store's cancel
requests, which its supervisor polls.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio
import yaml

from . import _records as r
from ._agent import Agent
from ._config import AgentConfig
from ._errors import RhoError, StoreError
from ._events import RunResult
from ._session_store import SessionStore
from ._supervisor import apply_control, open_supervisor

__all__ = ["QueuedRun", "enqueue", "serve_worker"]

logger = logging.getLogger("rho_actors.workers")

DEFAULT_LEASE_SECONDS = 10.0
# How often an idle worker looks for queued runs, and a waiter for a result.
POLL_INTERVAL = 0.1
# How often events() looks for newly persisted records.
EVENTS_POLL_INTERVAL = 0.2
# Statuses of a queued run that no longer change.
FINAL = ("done", "cancelled")


def _backend(store: SessionStore) -> Any:
    backend = store.backend
    if not hasattr(backend, "claim"):
        raise RhoError(
            f"queued runs need a database store (sqlite:FILE or postgresql://...), "
            f"not {store.location}",
            operation="enqueue",
        )
    return backend


@attrs.frozen
class QueuedRun:
    """A run waiting in (or done from) a store's queue, from any process."""

    store: SessionStore
    id: str
    session_id: str

    async def status(self) -> str:
        """``queued``, ``claimed`` (a worker runs it), ``done`` or ``cancelled``."""
        job = await self.store._in_thread(_backend(self.store).job, self.id)
        return str(job["status"]) if job is not None else "missing"

    async def result(self) -> dict[str, Any] | None:
        """The recorded result (status, text, error, usage...), once there is one."""
        job = await self.store._in_thread(_backend(self.store).job, self.id)
        if job is None or job["result"] is None:
            return None
        value: dict[str, Any] = json.loads(job["result"])
        return value

    async def wait(self) -> dict[str, Any]:
        """The recorded result, once the run is done or cancelled."""
        while True:
            job = await self.store._in_thread(_backend(self.store).job, self.id)
            if job is None:
                raise RhoError("the queued run disappeared", session_id=self.session_id)
            if job["status"] in FINAL and job["result"] is not None:
                value: dict[str, Any] = json.loads(job["result"])
                return value
            await trio.sleep(POLL_INTERVAL)

    async def events(self, after_seq: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The session's trace records as the worker persists them (``seq``, ``ts``,
        ``type`` and the record's fields), from after ``after_seq``; ends once the
        run is done. Text deltas are not persisted, so they are not among them.
        """
        backend = _backend(self.store)
        last = after_seq
        while True:
            finished = await self.status() in FINAL
            if await self.store._in_thread(backend.exists, self.session_id):
                envelopes = await self.store._in_thread(backend.load, self.session_id)
                for envelope in envelopes:
                    if envelope.seq > last:
                        last = envelope.seq
                        yield {
                            "seq": envelope.seq,
                            "ts": envelope.ts,
                            **r.converter.unstructure(envelope.record),
                            "type": envelope.record.type,
                        }
            if finished:
                return
            await trio.sleep(EVENTS_POLL_INTERVAL)

    async def cancel(self, reason: str = "cancelled") -> None:
        """Cancel it: at once if still queued, else through the worker hosting it."""
        await self.store._in_thread(_backend(self.store).cancel_job, self.id, reason)

    async def approve(self, tool_call_id: str) -> QueuedRun:
        """Approve a call this (paused) run waits for; the run goes on, queued."""
        return await self._decide(tool_call_id, True, None)

    async def deny(self, tool_call_id: str, reason: str = "denied by user") -> QueuedRun:
        """Deny a call this (paused) run waits for; the run goes on, queued."""
        return await self._decide(tool_call_id, False, reason)

    async def _decide(self, tool_call_id: str, approved: bool, reason: str | None) -> QueuedRun:
        # The decision travels as a control request, and a resume run takes
        # it to whichever worker hosts the session next.
        await self.store.arequest_approval(self.session_id, tool_call_id, approved, reason)
        return await _enqueue_resume(self.store, self.session_id)


async def enqueue(
    store: SessionStore,
    prompt: str,
    *,
    agent: Agent | AgentConfig | None = None,
    session_id: str | None = None,
) -> QueuedRun:
    """Queue ``prompt`` for a new session (``agent``) or an existing one (``session_id``).

    The agent travels as its config (never its API key: workers take theirs
    from their own environment); an existing session's stored config is
    used when no agent is given.
    """
    backend = _backend(store)
    if agent is None and session_id is None:
        raise RhoError("enqueue needs an agent for a new session, or a session_id")
    config = agent.config if isinstance(agent, Agent) else agent
    if config is None:
        assert session_id is not None
        text = await store._in_thread(backend.read_config, session_id)
        if text is None:
            raise RhoError("no stored config for this session", session_id=session_id)
    else:
        text = yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)
    session_id = session_id or uuid.uuid4().hex
    job_id = uuid.uuid4().hex
    await store._in_thread(backend.enqueue, job_id, session_id, prompt, text)
    return QueuedRun(store=store, id=job_id, session_id=session_id)


# The prompt of a queued run that resumes a paused run instead of starting one.
RESUME = "\x00resume"


async def _enqueue_resume(store: SessionStore, session_id: str) -> QueuedRun:
    backend = _backend(store)
    text = await store._in_thread(backend.read_config, session_id)
    if text is None:
        raise RhoError("no stored config for this session", session_id=session_id)
    job_id = uuid.uuid4().hex
    await store._in_thread(backend.enqueue, job_id, session_id, RESUME, text)
    return QueuedRun(store=store, id=job_id, session_id=session_id)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def serve_worker(
    store: SessionStore,
    *,
    concurrency: int = 4,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Claim and run queued runs until cancelled; reports the worker's id when ready."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    backend = _backend(store)
    me = worker_id()
    host, pid = socket.gethostname(), os.getpid()
    running = 0

    async def beat() -> None:
        await store._in_thread(
            backend.heartbeat, me, host, pid, concurrency, running, lease_seconds
        )

    async with open_supervisor(store=store) as supervisor, trio.open_nursery() as nursery:

        async def heartbeats() -> None:
            while True:
                await trio.sleep(lease_seconds / 3)
                with contextlib.suppress(StoreError):  # the claim loop reports it
                    await beat()

        async def run_one(job: dict[str, Any]) -> None:
            nonlocal running
            try:
                try:
                    outcome = await _run_job(store, supervisor, job, me)
                except Exception as exc:
                    # One run's failure (a crashed session, a decision for a
                    # call that no longer waits) is that run's result; the
                    # worker and its other runs go on.
                    outcome = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
                    outcome["text"] = ""
                with contextlib.suppress(StoreError):
                    # Unrecorded, the run goes back to the queue when the lease
                    # expires, and the next worker records how it ended.
                    await store._in_thread(backend.finish, job["id"], me, outcome)
            finally:
                running -= 1

        await beat()
        nursery.start_soon(heartbeats)
        task_status.started(me)
        failures = 0
        while True:
            free = concurrency - running
            try:
                jobs = (
                    await store._in_thread(backend.claim, me, free, lease_seconds) if free else []
                )
            except StoreError as exc:
                # No database, no new work: say so, and try again with backoff.
                failures += 1
                wait = min(30.0, 0.5 * 2 ** min(failures, 6))
                logger.warning(
                    "worker %s cannot reach the store (%s); taking no work, retrying in %.1f s",
                    me,
                    exc,
                    wait,
                )
                await trio.sleep(wait)
                continue
            if failures:
                logger.warning("worker %s reached the store again; taking work", me)
                failures = 0
            for job in jobs:
                running += 1
                nursery.start_soon(run_one, job)
            if not jobs:
                await trio.sleep(POLL_INTERVAL)


async def _run_job(
    store: SessionStore, supervisor: Any, job: dict[str, Any], worker: str
) -> dict[str, Any]:
    """Run one claimed job on its session; what the queue records as its result."""
    session_id = job["session_id"]
    try:
        data = yaml.safe_load(job["config"]) or {}
        agent = Agent(AgentConfig.from_dict(data, source=f"queued run {job['id']}"))
        if await store._in_thread(store.backend.exists, session_id):
            session = await supervisor.resume_session(session_id, agent)
        else:
            session = await supervisor.start_session(
                store.create_session(agent, session_id=session_id)
            )
    except Exception as exc:  # a bad config or an unreadable session: the run's result
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "text": ""}
    try:
        if job["prompt"] == RESUME:
            # Decisions sent for the paused calls, then the paused run goes on.
            requests = await trio.to_thread.run_sync(store.take_control_requests, [session_id])
            for _, kind, payload in requests:
                await apply_control(session, kind, payload)
            return _record(await session.resume())
        state = session.state
        # Runs the session has begun: the finished ones, and one cut off by a crash.
        begun = state.run_count + (1 if state.status == "interrupted" else 0)
        started = job.get("run_number")
        if started is not None and begun >= started:
            # A worker that died had started this run: finish it if it was
            # cut off, else record how it ended; never start it again.
            if state.status == "interrupted":
                return _record(await session.resume())
            return _record_state(state)
        await store._in_thread(_backend(store).mark_run, job["id"], worker, begun + 1)
        return _record(await session.run(job["prompt"]))
    finally:
        await supervisor.stop_session(session)


def _record_state(state: Any) -> dict[str, Any]:
    """A finished run's result, as its session's state shows it."""
    text = ""
    for message in reversed(state.messages):
        if message.get("role") == "assistant" and message.get("content"):
            text = str(message["content"])
            break
    return {
        "status": state.status,
        "text": text,
        "error": None,
        "cancel_reason": None,
        "usage": dict(state.usage),
        "turns": None,
    }


def _record(result: RunResult) -> dict[str, Any]:
    return {
        "status": result.status,
        "text": result.text,
        "error": result.error,
        "cancel_reason": result.cancel_reason,
        "usage": dict(result.usage),
        "turns": result.turns,
        "pending_approvals": [
            {"tool_call_id": p.tool_call_id, "tool_name": p.tool_name, "tool_args": p.tool_args}
            for p in result.pending_approvals
        ],
    }
