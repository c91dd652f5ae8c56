"""Many processes, one set of sessions (issue 16): queued runs, workers, leases,
failover after kill -9, cancels from another process, and a stalled worker fenced.

Workers are real subprocesses (``python -m rho_actors worker``) sharing a real
PostgreSQL database; the model is the scripted server in this process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pg_server
import pytest
import trio

from rho_actors import AgentConfig, SessionStore, enqueue, serve_worker
from rho_actors.testing import RecordedRequest, Reply, ScriptedServer

LEASE = 2.0


@pytest.fixture(scope="module")
def postgres_admin() -> Iterator[str]:
    reason = pg_server.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    with pg_server.postgres_server() as url:
        yield url


@pytest.fixture
def database(postgres_admin: str) -> str:
    return pg_server.fresh_database(postgres_admin)


def _config(server: ScriptedServer, tmp_path: Path) -> AgentConfig:
    return AgentConfig(
        base_url=server.base_url, model="scripted", working_dir=str(tmp_path), profile="readonly"
    )


def _echo(request: RecordedRequest) -> Reply:
    last = request.messages[-1]
    return Reply.text(f"answer to {last.get('content')}")


def _slow_echo(request: RecordedRequest) -> Reply:
    """Long enough that a killed worker has runs in flight."""
    last = request.messages[-1]
    return Reply.text(f"answer to {last.get('content')}", first_byte_delay=0.3)


class Workers:
    def __init__(self, database: str) -> None:
        self.database = database
        self.procs: list[trio.Process] = []

    async def start(self, n: int, concurrency: int = 8) -> None:
        for _ in range(n):
            self.procs.append(
                await trio.lowlevel.open_process(
                    [
                        sys.executable,
                        "-m",
                        "rho_actors",
                        "worker",
                        "--store",
                        self.database,
                        "--concurrency",
                        str(concurrency),
                        "--lease",
                        str(LEASE),
                    ],
                    stderr=subprocess.DEVNULL,
                )
            )

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGKILL)
            await proc.wait()


@pytest.fixture
async def workers(database: str) -> AsyncIterator[Workers]:
    pool = Workers(database)
    try:
        yield pool
    finally:
        with trio.CancelScope(shield=True):
            await pool.stop()


async def _jobs(store: SessionStore) -> list[dict[str, Any]]:
    backend: Any = store.backend

    def read() -> list[dict[str, Any]]:
        with backend._tx("read jobs") as conn:
            cursor = conn.execute("SELECT id, status, worker, attempts, result FROM rho_queue")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    return await trio.to_thread.run_sync(read)


async def test_three_workers_share_200_runs_and_survive_a_kill_9(
    server: ScriptedServer, workers: Workers, database: str, tmp_path: Path
) -> None:
    server.default = _slow_echo
    store = SessionStore(database)
    config = _config(server, tmp_path)
    queued = [await enqueue(store, f"task {i}", agent=config) for i in range(200)]
    await workers.start(3)
    victim = workers.procs[0]

    async def victim_busy() -> bool:
        jobs = await _jobs(store)
        done = sum(1 for j in jobs if j["status"] == "done")
        mine = [
            j
            for j in jobs
            if j["status"] == "claimed" and j["worker"] and f":{victim.pid}:" in j["worker"]
        ]
        return done >= 30 and len(mine) >= 2

    with trio.fail_after(60):
        # Other processes change the database: polling it is the only way to see.
        # The kill comes mid-way, while the victim has runs in flight.
        while not await victim_busy():  # noqa: ASYNC110
            await trio.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    await victim.wait()
    with trio.fail_after(120):
        results = [await run.wait() for run in queued]
    assert all(r["status"] == "completed" for r in results), [
        r for r in results if r["status"] != "completed"
    ][:3]
    assert [r["text"] for r in results] == [f"answer to task {i}" for i in range(200)]
    jobs = await _jobs(store)
    assert len(jobs) == 200 and {j["status"] for j in jobs} == {"done"}
    assert len({j["worker"] for j in jobs}) >= 2  # the work was shared
    # The killed worker had runs in flight: others took them over.
    assert [j for j in jobs if j["attempts"] > 1]
    # Every session holds exactly its one prompt and one answer: nothing lost,
    # nothing recorded twice (a re-run after the kill resumed, not restarted).
    for run in queued:
        state = await trio.to_thread.run_sync(store.load_state, run.session_id)
        users = [m for m in state.messages if m["role"] == "user"]
        assert len(users) == 1, (run.session_id, state.messages)


async def test_a_cancel_from_another_process_reaches_the_worker(
    server: ScriptedServer, workers: Workers, database: str, tmp_path: Path
) -> None:
    server.add(Reply.text("never", first_byte_delay=600))
    store = SessionStore(database)
    run = await enqueue(store, "take your time", agent=_config(server, tmp_path))
    await workers.start(1)
    with trio.fail_after(30):
        while await run.status() != "claimed" or not server.chat_requests:  # noqa: ASYNC110
            await trio.sleep(0.05)
    request = server.chat_requests[-1]
    started = trio.current_time()
    await run.cancel("changed my mind")
    with trio.fail_after(5):
        # The worker drops its model stream when the cancel reaches it: PostgreSQL's
        # NOTIFY wakes it at once (measured at 5 ms; bench/bench_workers.py).
        while not request.disconnected:  # noqa: ASYNC110
            await trio.sleep(0.005)
    assert trio.current_time() - started < 0.5
    with trio.fail_after(30):
        result = await run.wait()
    assert result["status"] == "cancelled" and result["cancel_reason"] == "changed my mind"


async def test_a_queued_run_is_cancelled_before_any_worker_sees_it(
    server: ScriptedServer, database: str, tmp_path: Path
) -> None:
    store = SessionStore(database)
    run = await enqueue(store, "never mind", agent=_config(server, tmp_path))
    await run.cancel("not needed")
    assert (await run.wait())["status"] == "cancelled"
    assert server.chat_requests == []


async def test_a_stalled_worker_is_fenced(
    server: ScriptedServer, workers: Workers, database: str, tmp_path: Path
) -> None:
    """A worker frozen past its lease loses the session to another; when it wakes,
    its writes are refused and its result is not recorded: one host at a time."""
    store = SessionStore(database)
    # The first model call answers slowly: the first worker is frozen meanwhile.
    server.add(Reply.text("from the stalled worker", first_byte_delay=4))
    server.default = lambda request: Reply.text("from the second worker")
    run = await enqueue(store, "who answers?", agent=_config(server, tmp_path))
    await workers.start(1, concurrency=1)
    stalled = workers.procs[0]
    with trio.fail_after(30):
        while not server.chat_requests:  # noqa: ASYNC110
            await trio.sleep(0.05)
    stalled.send_signal(signal.SIGSTOP)
    await workers.start(1, concurrency=1)
    with trio.fail_after(60):
        result = await run.wait()
    assert result["text"] == "from the second worker"
    stalled.send_signal(signal.SIGCONT)
    await trio.sleep(6)  # the stalled worker gets its slow answer and tries to write it
    (job,) = await _jobs(store)
    assert '"from the second worker"' in job["result"]
    state = await trio.to_thread.run_sync(store.load_state, run.session_id)
    answers = [m["content"] for m in state.messages if m["role"] == "assistant"]
    assert "from the stalled worker" not in answers


async def test_in_process_worker_on_sqlite(server: ScriptedServer, tmp_path: Path) -> None:
    """The same API on one SQLite file, with the worker in this trio run."""
    server.default = _echo
    store = SessionStore(f"sqlite:{tmp_path / 'q.db'}")
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_worker, store)
        runs = [await enqueue(store, f"job {i}", agent=_config(server, tmp_path)) for i in range(5)]
        with trio.fail_after(30):
            texts = [(await run.wait())["text"] for run in runs]
        again = await enqueue(store, "follow-up", session_id=runs[0].session_id)
        with trio.fail_after(30):
            assert (await again.wait())["text"] == "answer to follow-up"
            kinds = [event["type"] async for event in again.events()]
        assert kinds[-1] == "run_end" and "message" in kinds
        assert kinds.count("run_start") == 2  # the session's two runs, replayed
        nursery.cancel_scope.cancel()
    assert texts == [f"answer to job {i}" for i in range(5)]
    state = store.load_state(runs[0].session_id)
    assert [m["content"] for m in state.messages if m["role"] == "user"] == ["job 0", "follow-up"]


def test_enqueue_needs_a_database_store(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="database store"):
        trio.run(lambda: enqueue(SessionStore(tmp_path), "x", agent=AgentConfig()))
    assert os.path.isdir(tmp_path)


async def test_dispatch_queues_for_workers_and_waits(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """`rho-actors dispatch FILE --store sqlite:... --wait` queues the tasks, a worker
    (here, in this process) runs them, and the results land in --output."""
    import json

    import yaml

    server.default = _echo
    location = f"sqlite:{tmp_path / 'q.db'}"
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        yaml.safe_dump({"tasks": [{"id": f"t{i}", "prompt": f"p{i}"} for i in range(4)]})
    )
    output = tmp_path / "out.jsonl"
    store = SessionStore(location)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_worker, store)
        done = await trio.run_process(
            [
                sys.executable,
                "-m",
                "rho_actors",
                "dispatch",
                str(tasks),
                "--store",
                location,
                "--wait",
                "--output",
                str(output),
                "--base-url",
                server.base_url,
                "--model",
                "scripted",
                "--working-dir",
                str(tmp_path),
            ],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        nursery.cancel_scope.cancel()
    assert done.returncode == 0, done.stderr.decode()
    assert b"queued 4 runs" in done.stderr
    records = sorted(
        (json.loads(line) for line in output.read_text().splitlines()), key=lambda r: r["id"]
    )
    assert [(r["id"], r["status"], r["text"]) for r in records] == [
        (f"t{i}", "completed", f"answer to p{i}") for i in range(4)
    ]


async def test_approvals_and_reconfiguration_from_another_process(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """A queued run that pauses for approval is approved from here (another process as
    far as the worker knows: the decision goes through the store) and finishes; a
    reconfiguration reaches a session hosted by a supervisor elsewhere."""
    from rho_actors import Agent, open_supervisor

    location = f"sqlite:{tmp_path / 'a.db'}"
    store = SessionStore(location)
    config = AgentConfig(
        base_url=server.base_url,
        model="scripted",
        working_dir=str(tmp_path),
        profile="developer",
        auto_approve=False,
    )
    (tmp_path / "a.txt").write_text("x\n")
    server.add(
        Reply.tool_call("write", {"path": "b.txt", "content": "made"}, id="w1"),
        Reply.text("written"),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_worker, store)
        run = await enqueue(store, "write b.txt", agent=config)
        with trio.fail_after(30):
            paused = await run.wait()
        assert paused["status"] == "paused"
        follow = await run.approve("w1")
        with trio.fail_after(30):
            assert (await follow.wait())["text"] == "written"
        nursery.cancel_scope.cancel()
    assert (tmp_path / "b.txt").read_text() == "made"
    # Reconfiguration of a session a supervisor hosts, sent through the store.
    other = SessionStore(location)
    async with open_supervisor(store=other) as supervisor:
        session = await supervisor.start_session(Agent(config))
        server.add(Reply.text("hello"))
        await session.run("hi")
        await store.arequest_reconfigure(session.id, profile="readonly")
        with trio.fail_after(10):
            while session.profile.name != "readonly":  # noqa: ASYNC110
                await trio.sleep(0.02)


async def test_a_worker_without_its_database_stops_taking_work_and_says_so(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """The database goes away under a running worker: it says so (and takes no work);
    when the database is back, it takes work again."""
    if pg_server.unavailable_reason() is not None or os.environ.get(pg_server.ENV):
        pytest.skip("needs a PostgreSQL server these tests start and stop themselves")
    pg = pg_server.PgServer()
    pg.start()
    proc: trio.Process | None = None
    try:
        url = pg_server.fresh_database(pg.url)
        store = SessionStore(url)
        log = tmp_path / "worker.log"
        err = await trio.to_thread.run_sync(lambda: open(log, "wb"))  # noqa: SIM115
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-m", "rho_actors", "worker", "--store", url, "--lease", "2"],
                stderr=err,
            )
        finally:
            err.close()
        with trio.fail_after(30):
            while b"serving" not in log.read_bytes():  # noqa: ASYNC110
                await trio.sleep(0.05)
        await trio.to_thread.run_sync(pg.stop)
        with trio.fail_after(30):
            while b"cannot reach the store" not in log.read_bytes():  # noqa: ASYNC110
                await trio.sleep(0.1)
        await trio.to_thread.run_sync(pg.start)
        server.default = _echo
        run = await enqueue(SessionStore(url), "are you back?", agent=_config(server, tmp_path))
        with trio.fail_after(60):
            assert (await run.wait())["text"] == "answer to are you back?"
        assert b"reached the store again" in log.read_bytes()
        del store
    finally:
        if proc is not None:
            proc.kill()
            await proc.wait()
        await trio.to_thread.run_sync(pg.remove)
