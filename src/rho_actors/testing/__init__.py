"""Offline testing support: a scripted, OpenAI-compatible model server.

Agents are tested through their real HTTP client against a loopback server
whose answers (text, tool calls, usage, faults, timing) a test scripts in
advance, and whose :class:`Dialect` can mimic a server other than OpenAI's
(llama.cpp's, a LiteLLM proxy). :class:`FakeDaytona` does the same for the
Daytona sandbox API, so code using the real ``daytona`` SDK runs offline.
See ``docs/testing.md``.
"""

from ._daytona import DaytonaRequest as DaytonaRequest
from ._daytona import FakeDaytona as FakeDaytona
from ._daytona import FakeSandbox as FakeSandbox
from ._daytona import open_fake_daytona as open_fake_daytona
from ._daytona import serve_fake_daytona as serve_fake_daytona
from ._faults import DiskFaults as DiskFaults
from ._faults import crash_next_run as crash_next_run
from ._inprocess import InProcessModel as InProcessModel
from ._inprocess import open_in_process_model as open_in_process_model
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
from ._script import offline_responder as offline_responder
from ._script import ok_responder as ok_responder
from ._server import DEFAULT_BACKLOG as DEFAULT_BACKLOG
from ._server import ScriptedServer as ScriptedServer
from ._server import open_scripted_server as open_scripted_server
from ._server import serve_scripted as serve_scripted

__all__ = [
    "DEFAULT_BACKLOG",
    "DaytonaRequest",
    "Dialect",
    "DiskFaults",
    "ErrorPlacement",
    "FakeDaytona",
    "FakeSandbox",
    "Fault",
    "FaultKind",
    "InProcessModel",
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
    "offline_responder",
    "ok_responder",
    "open_fake_daytona",
    "open_in_process_model",
    "open_scripted_server",
    "serve_fake_daytona",
    "serve_scripted",
]
