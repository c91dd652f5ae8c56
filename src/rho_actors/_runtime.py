"""The runtime API: the seed's ``create_runtime`` / ``run_prompt`` / ``dispatch_prompt``.

A runtime bundles an agent, its session and its options, for embedding in
services and workers. It is built on the actor layer: ``run_prompt`` is a
session run, ``dispatch_prompt`` a run whose result is collected later.

Background runs and structured concurrency
------------------------------------------
``dispatch_prompt(runtime, prompt)`` with a ``nursery=`` starts the run in
that nursery at once. Without one (the seed's form) the run starts at once
in this ``trio.run``'s ambient host (see ``rho_actors._host``): the handle
says ``running`` straight away, so the seed's polling loop ::

    handle = dispatch_prompt(runtime, "analyze the logs")
    while not handle.done():
        await trio.sleep(1)

ends, and ``results = [await h.wait() for h in handles]`` collects runs that
all went in parallel. Nothing outlives the ``trio.run``: when it ends, the
host cancels what is still running (each run still ends cleanly).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import attrs
import trio

from ._agent import Agent
from ._cancel import CancellationToken
from ._config import AgentConfig
from ._errors import RhoError
from ._events import RunResult
from ._host import ambient_host
from ._messages import EventCallback
from ._observability import Observability
from ._profiles import PermissionProfile, load_profile
from ._session import ApprovalCallback, Session
from ._session_store import SessionStore
from ._tools import ToolRegistry

HandleStatus = Literal["running", "completed", "cancelled", "error", "paused"]


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _env_float(name: str) -> float | None:
    value = os.environ.get(name)
    return float(value) if value else None


@attrs.define(kw_only=True)
class RuntimeOptions:
    """How a runtime is set up. Every field has an environment-variable default.

    ``RHO_ACTORS_MODEL``, ``RHO_ACTORS_BASE_URL`` (or ``OPENAI_BASE_URL``),
    ``RHO_ACTORS_REASONING_EFFORT``, ``RHO_ACTORS_WORKING_DIR``,
    ``RHO_ACTORS_PROFILE``, ``RHO_ACTORS_AUTO_APPROVE``, ``RHO_ACTORS_TEAM_ID``,
    ``RHO_ACTORS_PROJECT_ID``, ``RHO_ACTORS_OBSERVABILITY_CONFIG``,
    ``RHO_ACTORS_ENABLE_DELEGATE``, ``RHO_ACTORS_TIMEOUT_SECONDS``.
    """

    model: str = attrs.field(factory=lambda: _env("RHO_ACTORS_MODEL") or "gpt-5-mini")
    base_url: str | None = attrs.field(
        factory=lambda: _env("RHO_ACTORS_BASE_URL") or _env("OPENAI_BASE_URL")
    )
    reasoning_effort: str | None = attrs.field(factory=lambda: _env("RHO_ACTORS_REASONING_EFFORT"))
    working_dir: str | None = attrs.field(factory=lambda: _env("RHO_ACTORS_WORKING_DIR"))
    profile: str | PermissionProfile | None = attrs.field(
        factory=lambda: _env("RHO_ACTORS_PROFILE")
    )
    auto_approve: bool = attrs.field(factory=lambda: _env_bool("RHO_ACTORS_AUTO_APPROVE", True))
    team_id: str | None = attrs.field(factory=lambda: _env("RHO_ACTORS_TEAM_ID"))
    project_id: str | None = attrs.field(factory=lambda: _env("RHO_ACTORS_PROJECT_ID"))
    # Path of the telemetry database (default: see rho_actors._telemetry).
    observability_config: str | None = attrs.field(
        factory=lambda: _env("RHO_ACTORS_OBSERVABILITY_CONFIG")
    )
    session_id: str | None = None
    telemetry_metadata: dict[str, Any] = attrs.field(factory=dict)
    enable_delegate: bool = attrs.field(
        factory=lambda: _env_bool("RHO_ACTORS_ENABLE_DELEGATE", True)
    )
    # Beyond the seed: a per-run deadline, and persistence.
    timeout_seconds: float | None = attrs.field(
        factory=lambda: _env_float("RHO_ACTORS_TIMEOUT_SECONDS")
    )
    max_turns: int | None = None
    max_tool_executions: int | None = None
    store: SessionStore | None = None


@attrs.define(kw_only=True, eq=False)
class AgentRuntime:
    """Everything one embedded agent needs, returned by :func:`create_runtime`."""

    agent: Agent
    session: Session
    registry: ToolRegistry
    model: str
    profile_name: str
    session_id: str
    options: RuntimeOptions
    approval_callback: ApprovalCallback | None
    cancel_check: Callable[[], bool] | None
    observability: Any = None
    started: bool = False
    closed_status: str | None = None


def create_runtime(
    system_prompt: str | None = None,
    options: RuntimeOptions | None = None,
    session: Session | None = None,
    approval_callback: ApprovalCallback | None = None,
    cancel_check: Callable[[], bool] | None = None,
) -> AgentRuntime:
    """Build an agent and its session from ``options``."""
    options = options or RuntimeOptions()
    if session is None:
        config = AgentConfig(
            system_prompt=system_prompt,
            model=options.model,
            base_url=options.base_url,
            reasoning_effort=options.reasoning_effort,
            working_dir=options.working_dir,
            profile=options.profile,
            auto_approve=options.auto_approve,
            extras={"telemetry_metadata": dict(options.telemetry_metadata)},
        )
        if options.max_turns is not None:
            config.max_turns = options.max_turns
        config.max_tool_executions = options.max_tool_executions
        agent = Agent(config)
        session_id = options.session_id or uuid.uuid4().hex
        if options.store is not None:
            session = options.store.create_session(agent, session_id=session_id)
        else:
            session = Session(agent, session_id=session_id)
    agent = session.agent
    if not options.enable_delegate:
        session._add_changes({"enable_delegate": False})
        session._apply_reconfigure()
    session.approval_callback = approval_callback
    session.cancel_check = cancel_check
    session.run_timeout = options.timeout_seconds
    session.telemetry_metadata = dict(options.telemetry_metadata)
    observability = None
    if options.team_id and options.project_id:
        observability = Observability(
            session=session,
            team_id=options.team_id,
            project_id=options.project_id,
            db_path=options.observability_config,
            metadata=options.telemetry_metadata,
        )
        session._observability = observability
    return AgentRuntime(
        agent=agent,
        session=session,
        registry=session._tools,
        model=agent.config.model,
        profile_name=session.profile.name,
        session_id=session.id,
        options=options,
        approval_callback=approval_callback,
        cancel_check=cancel_check,
        observability=observability,
    )


async def start_runtime(runtime: AgentRuntime) -> None:
    """Open the observability session. Idempotent."""
    if runtime.started:
        return
    runtime.started = True
    if runtime.observability is not None:
        await runtime.observability.start()


async def run_prompt(
    runtime: AgentRuntime,
    prompt: str,
    on_event: EventCallback | None = None,
    *,
    token: CancellationToken | None = None,
) -> RunResult:
    """Run ``prompt`` to completion on the runtime's session."""
    if runtime.closed_status is not None:
        raise RhoError("the runtime is closed", session_id=runtime.session_id, operation="run")
    return await runtime.session.run(prompt=prompt, on_event=on_event, token=token)


async def close_runtime(runtime: AgentRuntime, status: str = "completed") -> None:
    """Close the observability session with a final status."""
    if runtime.closed_status is not None:
        return
    runtime.closed_status = status
    if runtime.observability is not None:
        await runtime.observability.close(status)
    await runtime.session.close()


def reconfigure_runtime(
    runtime: AgentRuntime,
    profile: str | PermissionProfile | None = None,
    working_dir: str | None = None,
    auto_approve: bool | None = None,
    enable_delegate: bool | None = None,
) -> PermissionProfile:
    """Hot-swap settings of the live session; they take effect at its next turn.

    The change travels as a ``Reconfigure`` message when the session's actor
    is running, so a run in flight picks it up between turns (never in the
    middle of a tool call). Returns the profile now in force.
    """
    changes: dict[str, Any] = {}
    new_profile = runtime.session.profile
    if profile is not None:
        new_profile = load_profile(profile)
        changes["profile"] = new_profile
        runtime.profile_name = new_profile.name
    if working_dir is not None:
        changes["working_dir"] = working_dir
    if auto_approve is not None:
        changes["auto_approve"] = auto_approve
    if enable_delegate is not None:
        changes["enable_delegate"] = enable_delegate
    runtime.session.reconfigure_nowait(**changes)
    runtime.registry = runtime.session._tools
    return new_profile


# --- dispatch ----------------------------------------------------------------


class AgentHandle:
    """A dispatched run: poll it, cancel it, or wait for its result."""

    def __init__(
        self,
        runtime: AgentRuntime,
        prompt: str,
        on_event: EventCallback | None,
        token: CancellationToken | None,
    ) -> None:
        self.runtime = runtime
        self.prompt = prompt
        self._on_event = on_event
        self._token = CancellationToken()
        self._unlink = token.subscribe(self._token.cancel) if token is not None else None
        self._status: HandleStatus = "running"
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self._done = trio.Event()
        self.started_at: float | None = None
        self.finished_at: float | None = None

    def done(self) -> bool:
        return self._done.is_set()

    @property
    def status(self) -> HandleStatus:
        """``running`` from the dispatch on, then the run's final status."""
        return self._status

    @property
    def result(self) -> RunResult | None:
        return self._result

    def cancel(self, reason: str = "cancelled") -> None:
        """Cancel the run (or, if it has not started, make it end at once as cancelled)."""
        self._token.cancel(reason)

    async def _execute(self) -> None:
        self._status = "running"
        self.started_at = time.monotonic()
        try:
            result = await run_prompt(self.runtime, self.prompt, self._on_event, token=self._token)
        except Exception as exc:
            self._error = exc
            self._status = "error"
        except trio.Cancelled as exc:
            # Whoever hosts the run (a nursery, or the ambient host at the end
            # of trio.run) is going away; the run itself has wound down.
            reason = exc.reason or "the run's host was cancelled"
            self._result = RunResult(
                text="", events=[], status="cancelled", usage={}, cancel_reason=reason
            )
            self._status = "cancelled"
            raise
        else:
            self._result = result
            self._status = result.status
        finally:
            self.finished_at = time.monotonic()
            if self._unlink is not None:
                self._unlink()
            self._done.set()

    async def wait(self) -> RunResult:
        """The run's result (an error in the machinery is raised here)."""
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __repr__(self) -> str:
        return f"AgentHandle(session={self.runtime.session_id!r}, status={self._status!r})"


def dispatch_prompt(
    runtime: AgentRuntime,
    prompt: str,
    on_event: EventCallback | None = None,
    token: CancellationToken | None = None,
    *,
    nursery: trio.Nursery | None = None,
) -> AgentHandle:
    """Start ``prompt`` in the background and return a handle.

    With ``nursery=`` the run starts in it right away; without, it starts
    right away in the ambient host (see the module docstring).
    """
    handle = AgentHandle(runtime, prompt, on_event, token)
    handle._status = "running"
    if nursery is not None:
        nursery.start_soon(handle._execute)
    else:
        ambient_host().submit(handle._execute)
    return handle
