"""The CLI on a real terminal (a pseudo-terminal that is the command's controlling tty)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

termios = pytest.importorskip("termios")
fcntl = pytest.importorskip("fcntl")


def _controlling_tty() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_until(fd: int, token: bytes, seconds: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + seconds
    while token not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    return seen


def test_ctrl_c_at_the_chat_prompt_leaves_the_terminal_echoing(tmp_path: Path) -> None:
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    env = dict(os.environ, RHO_ACTORS_SESSIONS_DIR=str(tmp_path / "sessions"))
    env.pop("OPENAI_API_KEY", None)
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "rho_actors", "chat"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=tmp_path,
            preexec_fn=_controlling_tty,
        )
        assert b"you> " in _read_until(master, b"you> ", 30)
        time.sleep(0.3)  # readline has switched the terminal to its own mode
        os.write(master, b"\x03")
        assert child.wait(timeout=20) == 130
        after = termios.tcgetattr(slave)
    finally:
        os.close(master)
        os.close(slave)
    assert after[3] & termios.ECHO, "echo was left off"
    assert after[3] & termios.ICANON, "line editing was left off"
    assert after == before
