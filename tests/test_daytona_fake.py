"""The fake Daytona API, driven by the real ``daytona`` SDK from worker threads."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from daytona import (
    CreateSandboxFromImageParams,
    CreateSandboxFromSnapshotParams,
    Daytona,
    DaytonaAuthenticationError,
    DaytonaConfig,
    DaytonaError,
    DaytonaNotFoundError,
    DaytonaRateLimitError,
    DaytonaTimeoutError,
    ListSandboxesQuery,
    Resources,
    Sandbox,
    SessionExecuteRequest,
)

import rho_actors.testing
from rho_actors.testing import FakeDaytona, open_fake_daytona

_T = TypeVar("_T")


async def sdk(fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Call the synchronous SDK off the event loop, which serves the fake."""
    return await trio.to_thread.run_sync(partial(fn, *args, **kwargs))


def client(fake: FakeDaytona, api_key: str | None = None) -> Daytona:
    config = DaytonaConfig(api_key=api_key or fake.api_key, api_url=fake.api_url, target="local")
    return Daytona(config)


async def new_sandbox(fake: FakeDaytona, **labels: str) -> tuple[Daytona, Sandbox]:
    daytona = await sdk(client, fake)
    params = CreateSandboxFromSnapshotParams(labels=labels or None)
    return daytona, await sdk(daytona.create, params, timeout=30)


async def eventually(condition: Callable[[], object], seconds: float = 5) -> None:
    """Poll ``condition`` in a thread until it holds: nothing announces what it checks."""
    with trio.fail_after(seconds):
        while not await trio.to_thread.run_sync(condition):  # noqa: ASYNC110
            await trio.sleep(0.02)


def processes_mentioning(token: str) -> list[int]:
    """Live processes whose command line contains ``token`` (on the host, any namespace)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_the_fake_is_exported() -> None:
    """The public names are re-exported from rho_actors.testing."""
    for name in (
        "DaytonaRequest",
        "FakeDaytona",
        "FakeSandbox",
        "open_fake_daytona",
        "serve_fake_daytona",
    ):
        assert name in rho_actors.testing.__all__
        assert getattr(rho_actors.testing, name) is not None


async def test_create_with_labels_then_get_and_list_by_label(fake_daytona: FakeDaytona) -> None:
    """A sandbox keeps its labels, env and intervals; get and list find it by id and label."""
    daytona = await sdk(client, fake_daytona)
    params = CreateSandboxFromSnapshotParams(
        labels={"rho-run": "r1"},
        env_vars={"GREETING": "hi"},
        auto_stop_interval=7,
        auto_delete_interval=30,
    )
    sandbox = await sdk(daytona.create, params, timeout=60)
    await sdk(daytona.create, CreateSandboxFromSnapshotParams(labels={"rho-run": "other"}))

    assert sandbox.state == "started"
    record = fake_daytona.sandboxes[sandbox.id]
    assert record.labels["rho-run"] == "r1"
    assert record.env == {"GREETING": "hi"}
    assert (record.auto_stop_interval, record.auto_delete_interval) == (7, 30)

    fetched = await sdk(daytona.get, sandbox.id)
    assert fetched.labels["rho-run"] == "r1"
    assert fetched.env == {"GREETING": "hi"}
    listed = await sdk(lambda: list(daytona.list(ListSandboxesQuery(labels={"rho-run": "r1"}))))
    assert [s.id for s in listed] == [sandbox.id]

    await sdk(sandbox.refresh_data)
    assert sandbox.auto_stop_interval == 7


async def test_create_from_an_image_with_resources(fake_daytona: FakeDaytona) -> None:
    """An image sandbox records its Dockerfile and resources and starts at once."""
    daytona = await sdk(client, fake_daytona)
    params = CreateSandboxFromImageParams(
        image="python:3.12", resources=Resources(cpu=2, memory=4, disk=5)
    )
    sandbox = await sdk(daytona.create, params, timeout=60)
    assert (sandbox.state, sandbox.cpu, sandbox.memory, sandbox.disk) == ("started", 2, 4, 5)
    assert "FROM python:3.12" in (fake_daytona.sandboxes[sandbox.id].dockerfile or "")


async def test_exec_runs_in_the_work_dir_with_combined_output(fake_daytona: FakeDaytona) -> None:
    """exec runs bash in the work dir with the sandbox's env and returns output and exit code."""
    daytona = await sdk(client, fake_daytona)
    params = CreateSandboxFromSnapshotParams(env_vars={"GREETING": "hi"})
    sandbox = await sdk(daytona.create, params)
    work_dir = await sdk(sandbox.get_work_dir)
    assert await sdk(sandbox.get_user_home_dir) == work_dir
    if fake_daytona.isolated:
        assert work_dir == "/home/daytona"

    response = await sdk(
        sandbox.process.exec,
        'echo "$GREETING $EXTRA"; pwd; echo oops >&2; exit 3',
        env={"EXTRA": "x"},
    )
    assert response.exit_code == 3
    assert response.result == f"hi x\n{work_dir}\noops\n"

    await sdk(sandbox.fs.create_folder, "sub", "755")
    in_sub = await sdk(sandbox.process.exec, "pwd", cwd=f"{work_dir}/sub")
    assert in_sub.result.strip() == f"{work_dir}/sub"


async def test_exec_past_its_timeout_is_killed(fake_daytona: FakeDaytona) -> None:
    """A command that outlives its timeout is killed and the SDK raises a timeout error."""
    _, sandbox = await new_sandbox(fake_daytona)
    with pytest.raises(DaytonaTimeoutError, match="timed out after 1 seconds"):
        await sdk(sandbox.process.exec, "sleep 20", timeout=1)
    assert fake_daytona.sandboxes[sandbox.id].running_pids == []


async def test_files_round_trip(fake_daytona: FakeDaytona) -> None:
    """Upload, download, list, info, folders, content and name search, delete."""
    _, sandbox = await new_sandbox(fake_daytona)
    work_dir = await sdk(sandbox.get_work_dir)
    every_byte = bytes(range(256)) * 3
    await sdk(sandbox.fs.upload_file, every_byte, "data/blob.bin")
    await sdk(sandbox.fs.upload_file, b"alpha\nneedle here\n", f"{work_dir}/data/notes.txt")
    await sdk(sandbox.fs.create_folder, "data/empty", "755")

    assert await sdk(sandbox.fs.download_file, "data/blob.bin") == every_byte
    listed = await sdk(sandbox.fs.list_files, "data")
    assert sorted((f.name, f.is_dir) for f in listed) == [
        ("blob.bin", False),
        ("empty", True),
        ("notes.txt", False),
    ]
    info = await sdk(sandbox.fs.get_file_info, "data/notes.txt")
    assert (info.size, info.is_dir, info.path) == (18, False, f"{work_dir}/data/notes.txt")

    matches = await sdk(sandbox.fs.find_files, "data", "needle")
    assert [(m.file, m.line, m.content) for m in matches] == [
        (f"{work_dir}/data/notes.txt", 2, "needle here")
    ]
    found = await sdk(sandbox.fs.search_files, work_dir, "*.txt")
    assert found.files == [f"{work_dir}/data/notes.txt"]

    # A command sees what the file API wrote, and the other way round.
    cat = await sdk(sandbox.process.exec, "cat data/notes.txt && echo made > data/made.txt")
    assert cat.result == "alpha\nneedle here\n"
    assert await sdk(sandbox.fs.download_file, "data/made.txt") == b"made\n"

    await sdk(sandbox.fs.delete_file, "data/notes.txt")
    with pytest.raises(DaytonaNotFoundError):
        await sdk(sandbox.fs.download_file, "data/notes.txt")
    with pytest.raises(DaytonaNotFoundError):
        await sdk(sandbox.fs.get_file_info, "data/notes.txt")


async def test_sandbox_files_stay_in_the_sandbox(fake_daytona: FakeDaytona) -> None:
    """Files a command or an upload writes land in the sandbox dir, not the test's cwd."""
    _, sandbox = await new_sandbox(fake_daytona)
    name = f"marker-{uuid.uuid4().hex}.txt"
    await sdk(sandbox.process.exec, f"echo x > {name}")
    await sdk(sandbox.fs.upload_file, b"y", f"up-{name}")
    await sdk(sandbox.fs.upload_file, b"z", f"../../../../../../up-{name}")

    root = fake_daytona.sandboxes[sandbox.id].root
    assert not (Path.cwd() / name).exists()
    assert not (Path.cwd() / f"up-{name}").exists()
    assert (root / "home" / "daytona" / name).read_text() == "x\n"
    assert (root / "home" / "daytona" / f"up-{name}").read_bytes() == b"y"
    assert (root / f"up-{name}").read_bytes() == b"z"  # ".." stops at the sandbox's /


@pytest.mark.parametrize("bwrap", [None, False], ids=["bwrap-if-it-works", "plain"])
async def test_delete_session_kills_its_running_command(bwrap: bool | None) -> None:
    """A session command runs in the background until delete_session kills its process group."""
    async with open_fake_daytona(bwrap=bwrap) as fake:
        await _delete_session_kills(fake)


async def _delete_session_kills(fake: FakeDaytona) -> None:
    _, sandbox = await new_sandbox(fake)
    token = f"token-{uuid.uuid4().hex}"
    await sdk(sandbox.process.create_session, "work")
    request = SessionExecuteRequest(command=f"echo started; sleep 30; echo {token}", run_async=True)
    started = await sdk(sandbox.process.execute_session_command, "work", request)

    await eventually(lambda: processes_mentioning(token))
    await eventually(
        lambda: (
            "started"
            in (sandbox.process.get_session_command_logs("work", started.cmd_id).stdout or "")
        )
    )
    command = await sdk(sandbox.process.get_session_command, "work", started.cmd_id)
    assert command.exit_code is None

    await sdk(sandbox.process.delete_session, "work")
    await eventually(lambda: not processes_mentioning(token))
    with pytest.raises(DaytonaNotFoundError):
        await sdk(sandbox.process.get_session_command, "work", started.cmd_id)


async def test_a_synchronous_session_command_returns_its_output(fake_daytona: FakeDaytona) -> None:
    """Without run_async the call waits and returns stdout, stderr and the exit code apart."""
    _, sandbox = await new_sandbox(fake_daytona)
    await sdk(sandbox.process.create_session, "s")
    request = SessionExecuteRequest(command="echo out; echo err >&2; exit 4")
    result = await sdk(sandbox.process.execute_session_command, "s", request)
    assert (result.exit_code, result.stdout, result.stderr) == (4, "out\n", "err\n")


async def test_stop_then_start_keeps_the_files(fake_daytona: FakeDaytona) -> None:
    """A stopped sandbox refuses toolbox calls; started again it has its files back."""
    daytona, sandbox = await new_sandbox(fake_daytona)
    await sdk(sandbox.fs.upload_file, b"kept", "kept.txt")
    await sdk(daytona.stop, sandbox)
    assert sandbox.state == "stopped"
    with pytest.raises(DaytonaError, match="Is the Sandbox started"):
        await sdk(sandbox.process.exec, "true")
    await sdk(daytona.start, sandbox)
    assert sandbox.state == "started"
    assert await sdk(sandbox.fs.download_file, "kept.txt") == b"kept"


async def test_delete_removes_the_sandbox_and_its_directory(fake_daytona: FakeDaytona) -> None:
    """Deleting kills the sandbox's commands, removes its directory and makes it unknown."""
    daytona, sandbox = await new_sandbox(fake_daytona)
    await sdk(sandbox.process.create_session, "bg")
    request = SessionExecuteRequest(command="sleep 30", run_async=True)
    await sdk(sandbox.process.execute_session_command, "bg", request)
    record = fake_daytona.sandboxes[sandbox.id]
    assert record.root.is_dir()

    await sdk(daytona.delete, sandbox)
    assert record.deleted
    assert record.running_pids == []
    assert not record.root.exists()
    with pytest.raises(DaytonaNotFoundError):
        await sdk(daytona.get, sandbox.id)


async def test_an_unknown_sandbox_is_not_found(fake_daytona: FakeDaytona) -> None:
    """get of an id the API never made raises DaytonaNotFoundError."""
    daytona = await sdk(client, fake_daytona)
    with pytest.raises(DaytonaNotFoundError, match="not found"):
        await sdk(daytona.get, "no-such-sandbox")


async def test_fail_next_makes_the_sdk_raise_its_own_errors(fake_daytona: FakeDaytona) -> None:
    """A 429 becomes DaytonaRateLimitError, a 500 on a toolbox call an error; then all is well."""
    daytona = await sdk(client, fake_daytona)
    fake_daytona.fail_next(429, "Sandbox quota exceeded")
    with pytest.raises(DaytonaRateLimitError, match="Sandbox quota exceeded"):
        await sdk(daytona.create, CreateSandboxFromSnapshotParams())
    sandbox = await sdk(daytona.create, CreateSandboxFromSnapshotParams())

    fake_daytona.fail_next(500)
    with pytest.raises(DaytonaError) as caught:
        await sdk(sandbox.process.exec, "true")
    assert caught.value.status_code == 500
    assert (await sdk(sandbox.process.exec, "echo ok")).result == "ok\n"


async def test_a_wrong_api_key_is_an_authentication_error() -> None:
    """A fake built with a key refuses any other with a 401, which the SDK raises as such."""
    async with open_fake_daytona(api_key="the-right-key") as fake:
        assert fake.api_key == "the-right-key"
        wrong = await sdk(client, fake, "a-wrong-key")
        with pytest.raises(DaytonaAuthenticationError):
            await sdk(lambda: list(wrong.list()))
        right = await sdk(client, fake)
        assert await sdk(lambda: list(right.list())) == []


async def test_a_vanished_sandbox_fails_the_next_call_clearly(fake_daytona: FakeDaytona) -> None:
    """After vanish, toolbox and API calls for the sandbox raise DaytonaNotFoundError."""
    _, sandbox = await new_sandbox(fake_daytona)
    assert (await sdk(sandbox.process.exec, "echo before")).exit_code == 0
    record = fake_daytona.sandboxes[sandbox.id]

    fake_daytona.vanish(sandbox.id)
    assert record.vanished and record.deleted
    assert not record.root.exists()
    with pytest.raises(DaytonaNotFoundError, match=f"sandbox {sandbox.id} not found"):
        await sdk(sandbox.process.exec, "echo after")
    with pytest.raises(DaytonaNotFoundError):
        await sdk(sandbox.refresh_data)


async def test_without_bwrap_the_work_dir_is_a_real_path_in_the_sandbox() -> None:
    """With bubblewrap turned off commands run plainly, in a work dir inside the sandbox dir."""
    async with open_fake_daytona(bwrap=False) as fake:
        assert not fake.isolated
        _, sandbox = await new_sandbox(fake)
        root = fake.sandboxes[sandbox.id].root
        work_dir = await sdk(sandbox.get_work_dir)
        assert work_dir == str(root / "home" / "daytona")
        response = await sdk(sandbox.process.exec, "pwd; echo $HOME; echo x > made.txt")
        assert response.result == f"{work_dir}\n{work_dir}\n"
        assert (root / "home" / "daytona" / "made.txt").read_text() == "x\n"
        assert await sdk(sandbox.fs.download_file, "made.txt") == b"x\n"


async def test_the_cli_serves_until_stdin_closes() -> None:
    """`python -m rho_actors.testing daytona` prints READY <api_url> and answers the SDK."""
    argv = [sys.executable, "-m", "rho_actors.testing", "daytona", "--port", "0", "--api-key", "k"]
    process = await trio.lowlevel.open_process(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ}
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        line = b""
        with trio.fail_after(15):
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(1)
        word, api_url = line.decode().split()
        assert word == "READY" and api_url.endswith("/api")

        config = DaytonaConfig(api_key="k", api_url=api_url, target="local")
        daytona = await sdk(Daytona, config)
        sandbox = await sdk(daytona.create, CreateSandboxFromSnapshotParams())
        assert (await sdk(sandbox.process.exec, "echo hi")).result == "hi\n"

        await process.stdin.aclose()
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
