"""The kernel, not the parser, holds a sandboxed shell (issue 13, class "the sandbox
is not a boundary for root" and "denial of service: fork bombs").

Each test runs a command the restricted-shell parser would refuse, under a
profile whose shell is *unrestricted* but sandboxed without file writes or
network: whatever stops it is the kernel. The controls run the same command
without the sandbox.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from rho_actors import PermissionProfile, ToolContext, _sandbox, load_profile
from rho_actors.tools import BashTool

# Anything goes as far as the parser is concerned; only the kernel says no.
KERNEL_ONLY = attrs.evolve(
    load_profile("unrestricted"),
    name="kernel-only",
    shell_blocklist=(),
    file_write="off",
    network=False,
    sandbox="required",
)


@pytest.fixture
async def bwrap() -> AsyncIterator[_sandbox.SandboxProbe]:
    probe = await _sandbox.probe_bwrap()
    if not probe.available:
        pytest.skip(probe.reason)
    yield probe


async def _bash(
    profile: PermissionProfile, work: Path, command: str
) -> tuple[str, dict[str, object]]:
    ctx = ToolContext(session_id="s", call_id="c", working_dir=work)
    out = await BashTool(profile).handle({"command": command}, ctx)
    return out.content, dict(out.metadata)


async def test_no_capabilities_and_no_remount(tmp_path: Path, bwrap: object) -> None:
    """Even as root, the command holds no capability and cannot remount its directory."""
    text, meta = await _bash(
        KERNEL_ONLY,
        tmp_path,
        "grep CapEff /proc/self/status; mount -o remount,rw,bind . . 2>/dev/null; "
        "echo mount=$?; touch new.txt 2>/dev/null; echo touch=$?",
    )
    assert meta["sandboxed"] is True
    assert "CapEff:\t0000000000000000" in text
    assert "mount=0" not in text and "touch=1" in text
    assert not (tmp_path / "new.txt").exists()


async def test_control_writes_without_the_sandbox(tmp_path: Path) -> None:
    """The control: the same profile without a sandbox writes."""
    text, meta = await _bash(attrs.evolve(KERNEL_ONLY, sandbox="off"), tmp_path, "touch new.txt")
    assert meta["sandboxed"] is False and (tmp_path / "new.txt").exists(), text


async def test_the_agent_process_is_invisible(tmp_path: Path, bwrap: object) -> None:
    """Its own PID namespace: the agent (and its environ) is not in the command's /proc."""
    text, _ = await _bash(
        KERNEL_ONLY, tmp_path, f"test -e /proc/{os.getpid()}/environ && echo visible || echo gone"
    )
    assert text.strip() == "gone"


async def test_no_network_even_through_dev_tcp(tmp_path: Path, bwrap: object) -> None:
    """A listening loopback socket cannot be reached; with ``network: true`` it can."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    command = f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected || echo refused"
    try:
        text, _ = await _bash(KERNEL_ONLY, tmp_path, command)
        assert "refused" in text and "connected" not in text
        text, _ = await _bash(attrs.evolve(KERNEL_ONLY, network=True), tmp_path, command)
        assert "connected" in text
    finally:
        listener.close()


async def test_a_fork_bomb_meets_the_process_limit(
    tmp_path: Path, bwrap: _sandbox.SandboxProbe
) -> None:
    """Processes beyond ``max_processes`` fail to fork; the machine's table stays intact."""
    if os.geteuid() == 0 and bwrap.pids_cgroup is None:
        pytest.skip("root is exempt from RLIMIT_NPROC and no pids cgroup can be made here")
    bomb = "for i in $(seq 40); do sleep 1 & done; wait"
    text, meta = await _bash(attrs.evolve(KERNEL_ONLY, max_processes=16), tmp_path, bomb)
    assert meta["sandboxed"] is True
    assert "fork" in text and "Resource temporarily unavailable" in text, text
    # The control: with room for every process, every fork succeeds at once.
    text, meta = await _bash(attrs.evolve(KERNEL_ONLY, max_processes=100), tmp_path, bomb)
    assert meta["exit_code"] == 0 and "fork" not in text, text


async def test_git_leaves_the_index_alone(tmp_path: Path) -> None:
    """Under a restricted shell git takes no optional lock (status leaves .git/index
    alone even without a sandbox), and in the sandbox nothing rewrites the index."""
    _git(tmp_path, "init", "-q")
    (tmp_path / "f.txt").write_text("one\n")
    _git(tmp_path, "add", "f.txt")
    _git(tmp_path, "commit", "-qm", "x")
    index = tmp_path / ".git" / "index"
    os.utime(tmp_path / "f.txt", (1, 1))  # stale stat info: a refresh would rewrite
    before = index.stat().st_mtime_ns
    parser_only = attrs.evolve(load_profile("readonly"), sandbox="off")
    text, _ = await _bash(parser_only, tmp_path, "git status --short")
    assert index.stat().st_mtime_ns == before, text
    # `git diff` refreshes the index whatever the locks say: the sandbox stops it.
    if (await _sandbox.probe_bwrap()).available:
        text, _ = await _bash(load_profile("readonly"), tmp_path, "git diff --stat")
        assert index.stat().st_mtime_ns == before, text
    # The control: plain git refreshes (rewrites) the index.
    _git(tmp_path, "status", "--short")
    assert index.stat().st_mtime_ns != before


def _git(work: Path, *args: str) -> None:
    git = ["git", "-c", "user.email=a@b", "-c", "user.name=a", "-C", str(work)]
    subprocess.run([*git, *args], check=True, capture_output=True)
