"""Offline testing support: a scripted, OpenAI-compatible model server.

Agents are tested through their real HTTP client against a loopback server
whose answers (text, tool calls, usage, faults, timing) a test scripts in
advance, and whose :class:`Dialect` can mimic a server other than OpenAI's
(llama.cpp's, a LiteLLM proxy). See ``docs/testing.md``.
"""

from ._faults import DiskFaults as DiskFaults
from ._faults import crash_next_run as crash_next_run
from ._script import Dialect as Dialect
from ._script import ErrorPlacement as ErrorPlacement
from ._script import Fault as Fault
from ._script import FaultKind as FaultKind
from ._script import RecordedRequest as RecordedRequest
from ._script import Reply as Reply
from ._script import Responder as Responder
from ._script import RetryAfterHeader as RetryAfterHeader
from ._script import ScriptItem as ScriptItem
from ._script import ToolCallSpec as ToolCallSpec
from ._script import Usage as Usage
from ._script import benchmark_responder as benchmark_responder
from ._script import ok_responder as ok_responder
from ._server import DEFAULT_BACKLOG as DEFAULT_BACKLOG
from ._server import ScriptedServer as ScriptedServer
from ._server import open_scripted_server as open_scripted_server
from ._server import serve_scripted as serve_scripted

__all__ = [
    "DEFAULT_BACKLOG",
    "Dialect",
    "DiskFaults",
    "ErrorPlacement",
    "Fault",
    "FaultKind",
    "RecordedRequest",
    "Reply",
    "Responder",
    "RetryAfterHeader",
    "ScriptItem",
    "ScriptedServer",
    "ToolCallSpec",
    "Usage",
    "benchmark_responder",
    "crash_next_run",
    "ok_responder",
    "open_scripted_server",
    "serve_scripted",
]
