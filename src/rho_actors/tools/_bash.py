"""The ``bash`` tool: run a shell command in the working directory.

Order of events for a call: the profile's shell policy judges the command
(a refusal is a result the model reads, not an exception); the command is
wrapped in bubblewrap when the profile asks for a sandbox and one works
here; it runs as its own process group with no standard input; its merged
output is kept head and tail within the profile's limit; and when it ends,
times out or is cancelled, the whole group is stopped (see ``_process``).

A non-zero exit status is reported in the text and in ``metadata`` but is not
an error result: ``grep`` exiting 1 is an answer, not a failure. Timeouts,
refusals and commands that cannot start are errors.

The child's environment leaves out variables that look like secrets
(``*_API_KEY``, ``*TOKEN*``...) unless the tool is built with
``inherit_secrets=True``: whatever a command prints ends up in the session
trace, and keys must never reach it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from .._actor import RunLimiter
from .._errors import InvalidToolArguments
from .._sandbox import probe_bwrap, sandboxed
from .._secrets import environment_without_secrets
from .._shell_policy import check_command
from .._tools import JSONSchema, ToolContext, ToolOutput
from ._common import ProfileTool, error, get_str
from ._process import DEFAULT_GRACE, MiddleCapture, run_process_group

# Shell checks running at once in worker threads.
_CHECKS = RunLimiter("rho_actors_checks", 4)


__all__ = ["BashTool"]


@attrs.frozen(slots=True)
class BashTool(ProfileTool):
    """Runs ``bash -c COMMAND`` under the profile's shell policy and sandbox."""

    inherit_secrets: bool = attrs.field(default=False, kw_only=True)

    @property
    def uses_subprocess(self) -> bool:
        return True

    @property
    def timeout(self) -> float:
        """The Registry's outer bound: the profile's limit plus the kill grace."""
        return self.profile.bash_timeout + self.kill_grace + 5

    shell: str = attrs.field(default="bash", kw_only=True)
    kill_grace: float = attrs.field(default=DEFAULT_GRACE, kw_only=True)
    """Seconds between SIGTERM and SIGKILL when the command must be stopped."""

    @property
    def name(self) -> str:
        return "bash"

    @property
    def description(self) -> str:
        text = (
            "Run a shell command with bash in the working directory and return its combined "
            f"stdout and stderr (at most {self.profile.max_output_chars} characters; longer "
            "output keeps its beginning and end). There is no standard input; the command "
            f"is stopped after {self.profile.bash_timeout:g} seconds."
        )
        if self.profile.shell == "restricted":
            text += (
                " The shell is restricted to read-only commands (such as ls, cat, grep, rg, "
                "find, git log/diff/status); output may only be redirected to /dev/null."
            )
        return text

    @property
    def parameters(self) -> JSONSchema:
        return {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "The command to run."},
                "timeout": {
                    "type": "number",
                    "description": (
                        "Seconds before the command is stopped (at most "
                        f"{self.profile.bash_timeout:g})."
                    ),
                },
            },
            "required": ["command"],
            "additionalProperties": False,
        }

    @property
    def readonly(self) -> bool:
        return self.profile.shell == "restricted"

    async def checked(self, args: Mapping[str, Any]) -> tuple[str, float] | ToolOutput:
        """The command and its time limit, or the refusal the model reads.

        Shared by every backend: the profile is judged before anything runs,
        here or in a remote sandbox.
        """
        command = get_str(args, "command", required=True)
        timeout = _timeout(args, self.profile.bash_timeout)
        # Off the event loop: the checker is bounded (see _shell_syntax), but a
        # long command still costs tens of milliseconds that other sessions
        # should not wait for.
        verdict = await trio.to_thread.run_sync(
            check_command, command, self.profile, limiter=_CHECKS.get()
        )
        if not verdict.allowed:
            return error(f"bash: command refused: {verdict.reason}", refused=True)
        return command, timeout

    async def _run(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        profile = self.profile
        checked = await self.checked(args)
        if isinstance(checked, ToolOutput):
            return checked
        command, timeout = checked
        working_dir = Path(await trio.Path(ctx.working_dir).resolve())
        if not await trio.Path(working_dir).is_dir():
            return error(f"bash: working directory {working_dir} does not exist")
        argv = [self.shell, "-c", command]
        probe = await probe_bwrap() if profile.sandbox != "off" else None
        if probe is not None and not probe.available:
            if profile.sandbox == "required":
                return error(
                    f"bash: profile {profile.name!r} requires a sandbox, but bubblewrap is not "
                    f"usable here: {probe.reason}. Install bubblewrap, or set `sandbox: "
                    "preferred` in the profile to run commands checked by the parser only "
                    "(not a security boundary)."
                )
            probe = None
        capture = MiddleCapture(profile.max_output_chars)
        async with contextlib.AsyncExitStack() as stack:
            if probe is not None:
                argv = await stack.enter_async_context(
                    sandboxed(
                        argv,
                        probe=probe,
                        working_dir=working_dir,
                        writable=profile.file_write != "off",
                        network=profile.network,
                        max_processes=profile.max_processes,
                    )
                )
            result = await run_process_group(
                argv,
                cwd=working_dir,
                time_limit=timeout,
                stdout=capture,
                env=self._environment(),
                grace=self.kill_grace,
            )
        sandboxed_run = probe is not None
        output, truncated = capture.text()
        metadata = {
            "exit_code": result.returncode,
            "timed_out": result.timed_out,
            "sandboxed": sandboxed_run,
            "truncated_chars": truncated,
        }
        if result.timed_out:
            return error(
                f"{output}\n[timed out after {timeout:g} s; the command and its child "
                "processes were stopped]".lstrip("\n"),
                **metadata,
            )
        text = output if output else "(no output)"
        if result.returncode != 0:
            text = f"{text.rstrip(chr(10))}\n[exit code {result.returncode}]"
        return ToolOutput(content=text, metadata=metadata)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ) if self.inherit_secrets else environment_without_secrets()
        env.setdefault("GIT_TERMINAL_PROMPT", "0")  # never wait for credentials
        if self.readonly:
            # git status/diff otherwise refresh .git/index: a write.
            env["GIT_OPTIONAL_LOCKS"] = "0"
        return env


def _timeout(args: Mapping[str, Any], limit: float) -> float:
    value = args.get("timeout")
    if value is None:
        return limit
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise InvalidToolArguments(f"'timeout' must be a positive number of seconds, got {value!r}")
    return min(float(value), limit)
