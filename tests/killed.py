"""kill -9 at a chosen moment: a child Python process, killed once it printed a marker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import trio


async def output_until_killed(script: str, *args: str, until: bytes = b"\n") -> bytes:
    """Run ``python -c script args...``, read its stdout until ``until`` appears,
    then SIGKILL it (no cleanup of any kind runs) and return what it printed."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    output = b""
    try:
        with trio.fail_after(60):
            while until not in output:
                chunk = await proc.stdout.receive_some()
                assert chunk, f"the child exited before printing {until!r}"
                output += chunk
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        await proc.stdout.aclose()
    return output
