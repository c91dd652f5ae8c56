"""A tool's command cannot read the agent process's API key from /proc (issue 13, class
"secrets"), checked as an unprivileged user: root can always read /proc."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

SECRET = "sk-PLANTED-in-the-agent-environment"

_AGENT = textwrap.dedent(
    """
    import os, sys, trio, attrs
    from rho_actors import ToolContext, load_profile
    from rho_actors.tools import BashTool

    async def main():
        # readonly without a sandbox: the parser is the only filter here.
        profile = attrs.evolve(load_profile("readonly"), sandbox="off")
        ctx = ToolContext(session_id="s", call_id="c", working_dir=sys.argv[1])
        for command in (f"cat /proc/{os.getpid()}/environ", "ps axeww"):
            out = await BashTool(profile).handle({"command": command}, ctx)
            print(out.content)

    trio.run(main)
    """
)


_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _run_as_nobody(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``argv`` as user nobody, able to import what this test process imports."""
    return subprocess.run(
        [*_NOBODY, sys.executable, *argv],
        env={
            "PATH": os.environ["PATH"],
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _as_nobody(script: Path, work: Path, *, dumpable: bool) -> str:
    env = {"OPENAI_API_KEY": SECRET, "HOME": str(work)}
    if dumpable:
        env["RHO_ACTORS_DUMPABLE"] = "1"
    done = _run_as_nobody([str(script), str(work)], **env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _nobody_can_import_rho_actors() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    return _run_as_nobody(["-c", "import trio, rho_actors"]).returncode == 0


_GUARD = textwrap.dedent(
    """
    import ctypes, sys, trio
    from rho_actors import ToolContext, load_profile
    from rho_actors.tools import BashTool

    async def main():
        ctx = ToolContext(session_id="s", call_id="c", working_dir=sys.argv[1])
        await BashTool(load_profile("unrestricted")).handle({"command": "true"}, ctx)
        print(ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE

    trio.run(main)
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="prctl is Linux's")
@pytest.mark.parametrize(("opt_out", "expected"), [(False, "0"), (True, "1")])
def test_running_a_tool_makes_the_agent_non_dumpable(
    tmp_path: Path, opt_out: bool, expected: str
) -> None:
    """Once a tool runs a child, the agent process is non-dumpable (unless opted out)."""
    env = {**os.environ, "RHO_ACTORS_DUMPABLE": "1" if opt_out else ""}
    done = subprocess.run(
        [sys.executable, "-c", _GUARD, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


@pytest.mark.skipif(
    not _nobody_can_import_rho_actors(),
    reason="needs root, setpriv, and an install that an unprivileged user can read "
    "(this machine's Python lives under /root, which nobody cannot enter)",
)
def test_the_api_key_is_not_readable_through_proc() -> None:
    """cat /proc/<agent>/environ and ps axeww show no key; with the guard off they do."""
    base = Path(tempfile.mkdtemp(prefix="rho-secrets-"))
    try:
        os.chmod(base, 0o755)
        script = base / "agent.py"
        script.write_text(_AGENT)
        work = base / "work"
        work.mkdir()
        os.chmod(work, stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
        assert SECRET not in _as_nobody(script, work, dumpable=False)
        # The control: the same process left dumpable leaks its key to the tool.
        assert SECRET in _as_nobody(script, work, dumpable=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
