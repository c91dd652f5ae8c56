"""The library logs what an operator needs under the ``rho_actors`` logger, silently
by default: restarts, recoveries, store faults, reconnects, sandbox lifecycle."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rho_actors import (
    Agent,
    AgentConfig,
    DaytonaBackend,
    DirectoryBackend,
    Session,
    SessionStore,
    open_supervisor,
)
from rho_actors.testing import DiskFaults, FakeDaytona, Reply, ScriptedServer, crash_next_run


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name} {r.levelname} {r.getMessage()}" for r in caplog.records]


def test_the_library_is_silent_unless_configured() -> None:
    """No handler of the application's: nothing on stderr, even for warnings."""
    code = (
        "import logging, rho_actors\n"
        "logging.getLogger('rho_actors.store').warning('should not be seen')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stderr == ""


async def test_a_restart_is_logged(
    server: ScriptedServer, make_agent: Callable[..., Agent], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rho_actors")
    server.default = lambda request: Reply.text("ok")
    async with open_supervisor() as sup:
        session = await sup.start_session(make_agent())
        crash_next_run(session, RuntimeError("a bug"))
        with pytest.raises(Exception, match="crashed"):
            await session.run("boom")
    assert (
        f"rho_actors.supervisor WARNING restarting session:{session.id} "
        "(failed: RuntimeError: a bug)"
    ) in _messages(caplog)


async def test_a_store_fault_is_logged(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rho_actors")
    faults = DiskFaults()
    store = SessionStore(backend=DirectoryBackend(tmp_path / "s", write=faults))
    server.default = lambda request: Reply.text("fine")
    async with open_supervisor(store=store) as sup:
        session = await sup.start_session(make_agent())
        await session.run("first")
        faults.fill(after=10)
        assert (await session.run("second")).status == "error"
    warnings = [m for m in _messages(caplog) if m.startswith("rho_actors.store WARNING")]
    assert warnings and f"session {session.id}: the write failed" in warnings[0]
    assert "disk full" in warnings[0]


async def test_sandbox_lifecycle_is_logged(
    server: ScriptedServer,
    fake_daytona: FakeDaytona,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rho_actors")
    backend = DaytonaBackend(
        api_key=fake_daytona.api_key, api_url=fake_daytona.api_url, target="local"
    )
    agent = Agent(
        AgentConfig(
            base_url=server.base_url, model="scripted", working_dir=str(tmp_path), backend=backend
        )
    )
    server.add(Reply.tool_call("list", {"path": "."}), Reply.text("done"))
    async with Session(agent) as session:
        await session.run("look")
    messages = [m for m in _messages(caplog) if m.startswith("rho_actors.sandbox")]
    assert any(f"session {session.id}: created Daytona sandbox" in m for m in messages)
    assert any(f"session {session.id}: deleted Daytona sandbox" in m for m in messages)


async def test_recovery_is_logged(
    server: ScriptedServer,
    make_agent: Callable[..., Agent],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rho_actors")
    store = SessionStore(tmp_path / "s")
    agent = make_agent()
    server.add(Reply.text("one"))
    session = store.create_session(agent)
    await session.run("first")
    # What a kill -9 leaves: the trace says running, the process is gone.
    state = store.load_state(session.id)
    state.set_status("interrupted")
    meta = store.backend.read_meta(session.id)
    assert meta is not None
    store.backend.write_meta(session.id, {**meta, "status": "interrupted"})
    async with open_supervisor(store=store) as sup:
        recovered = await sup.recover(lambda sid: agent)
    assert [s.id for s in recovered] == [session.id]
    assert (
        f"rho_actors.supervisor INFO recover: session {session.id} is back (interrupted mid-run)"
        in _messages(caplog)
    )
