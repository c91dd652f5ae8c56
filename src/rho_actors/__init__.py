"""rho_actors: a trio-native, actor-model supervisor for LLM agents.

The seed-compatible layer (``Agent``, ``AgentConfig``, ``Session``,
``SessionStore`` ...) is built on the actor layer (``open_supervisor``,
session actors, the Registry and Store actors), and both are public.

The package is layered; each layer imports only from the layers below it,
and the import-linter contracts in ``pyproject.toml`` (run by ``.ci/run``)
hold it, with no import cycles between modules::

    10 tools        cli/ testing/ __main__
     9 top          _runtime _fanout
     8 host         _host: the ambient host of each trio.run
     7 facades      _supervisor (session hosting on _supervision) _session_store
                    _observability
     6 session      _session (facade and actor) _run (the agent loop, over the
                    session protocol it declares) _hosting (hosts and stores as
                    a session sees them, and the ambient-hosting hook)
     5 agent        _agent
     4 services     _services _registry _sandboxes (the owner of every Daytona
                    sandbox) _store/ (the Store actor and its backends)
                    _telemetry
     3 edges        _llm (the model client) _tools tools/ _delegation (the
                    capability a tool gets) _compaction
     2 policy       _profiles _shell_policy _command_rules _shell_syntax _paths
                    _sandbox: pure decisions and data; _daytona (one remote
                    sandbox through Daytona's SDK, in worker threads)
     1 plumbing     _actor (mailbox, reply, control channel) _messages
                    _supervision (generic OTP supervision)
     0 data         _errors _events _records (the one cattrs converter) _state
                    _config _secrets _cancel _gc _tracing _schema (JSON schemas
                    from types) _output (structured output) _hooks

A layer above reaches a layer below by importing it; a layer below reaches
one above only through a protocol it declares (``_run.Session``,
``_hosting.SessionHost``) or the one hook ``_host`` installs.
"""

import logging as _logging

from ._agent import Agent as Agent
from ._cancel import CancellationToken as CancellationToken
from ._config import AgentConfig as AgentConfig
from ._daytona import DaytonaBackend as DaytonaBackend
from ._daytona import SandboxError as SandboxError
from ._errors import ActorCrashed as ActorCrashed
from ._errors import ActorError as ActorError
from ._errors import ActorStopped as ActorStopped
from ._errors import ConfigError as ConfigError
from ._errors import ContextLengthExceeded as ContextLengthExceeded
from ._errors import InvalidToolArguments as InvalidToolArguments
from ._errors import MailboxClosed as MailboxClosed
from ._errors import ModelError as ModelError
from ._errors import RhoError as RhoError
from ._errors import StoreError as StoreError
from ._errors import SupervisionError as SupervisionError
from ._errors import ToolDenied as ToolDenied
from ._errors import ToolError as ToolError
from ._errors import ToolTimeout as ToolTimeout
from ._events import AgentEvent as AgentEvent
from ._events import ApprovalInterrupt as ApprovalInterrupt
from ._events import CompactResult as CompactResult
from ._events import PendingApproval as PendingApproval
from ._events import RunResult as RunResult
from ._fanout import Job as Job
from ._fanout import JobResult as JobResult
from ._fanout import fan_out as fan_out
from ._fanout import race as race
from ._hooks import AgentHooks as AgentHooks
from ._hooks import HookContext as HookContext
from ._llm import ModelClient as ModelClient
from ._messages import ApprovalDecision as ApprovalDecision
from ._messages import Cancel as Cancel
from ._messages import CompactRequest as CompactRequest
from ._messages import Hibernate as Hibernate
from ._messages import Prompt as Prompt
from ._messages import Reconfigure as Reconfigure
from ._messages import Stop as Stop
from ._output import OutputSpec as OutputSpec
from ._profiles import PermissionProfile as PermissionProfile
from ._profiles import list_profiles as list_profiles
from ._profiles import load_profile as load_profile
from ._runtime import AgentHandle as AgentHandle
from ._runtime import AgentRuntime as AgentRuntime
from ._runtime import RuntimeOptions as RuntimeOptions
from ._runtime import close_runtime as close_runtime
from ._runtime import create_runtime as create_runtime
from ._runtime import dispatch_prompt as dispatch_prompt
from ._runtime import reconfigure_runtime as reconfigure_runtime
from ._runtime import run_prompt as run_prompt
from ._runtime import start_runtime as start_runtime
from ._session import EventStream as EventStream
from ._session import EventStreamOverflow as EventStreamOverflow
from ._session import RunEvents as RunEvents
from ._session import RunHandle as RunHandle
from ._session import RunStream as RunStream
from ._session import Session as Session
from ._session import SessionMonitor as SessionMonitor
from ._session import SessionRef as SessionRef
from ._session_store import SessionStore as SessionStore
from ._state import State as State
from ._store._backend import DirectoryBackend as DirectoryBackend
from ._store._backend import SessionInfo as SessionInfo
from ._store._backend import StoreBackend as StoreBackend
from ._supervision import ChildSpec as ChildSpec
from ._supervisor import Supervisor as Supervisor
from ._supervisor import open_supervisor as open_supervisor
from ._supervisor import serve_supervisor as serve_supervisor
from ._telemetry import TelemetryDB as TelemetryDB
from ._telemetry import Totals as Totals
from ._tools import FunctionTool as FunctionTool
from ._tools import ToolContext as ToolContext
from ._tools import ToolHandler as ToolHandler
from ._tools import ToolOutput as ToolOutput
from ._tools import ToolRegistry as ToolRegistry
from ._tools import function_tool as function_tool
from ._workers import QueuedRun as QueuedRun
from ._workers import enqueue as enqueue
from ._workers import serve_worker as serve_worker

__version__ = "0.1.0"

__all__ = [
    "ActorCrashed",
    "ActorError",
    "ActorStopped",
    "Agent",
    "AgentConfig",
    "AgentEvent",
    "AgentHandle",
    "AgentHooks",
    "AgentRuntime",
    "ApprovalDecision",
    "ApprovalInterrupt",
    "Cancel",
    "CancellationToken",
    "ChildSpec",
    "CompactRequest",
    "CompactResult",
    "ConfigError",
    "ContextLengthExceeded",
    "DaytonaBackend",
    "DirectoryBackend",
    "EventStream",
    "EventStreamOverflow",
    "FunctionTool",
    "Hibernate",
    "HookContext",
    "InvalidToolArguments",
    "Job",
    "JobResult",
    "MailboxClosed",
    "ModelClient",
    "ModelError",
    "OutputSpec",
    "PendingApproval",
    "PermissionProfile",
    "Prompt",
    "QueuedRun",
    "Reconfigure",
    "RhoError",
    "RunEvents",
    "RunHandle",
    "RunResult",
    "RunStream",
    "RuntimeOptions",
    "SandboxError",
    "Session",
    "SessionInfo",
    "SessionMonitor",
    "SessionRef",
    "SessionStore",
    "State",
    "Stop",
    "StoreBackend",
    "StoreError",
    "SupervisionError",
    "Supervisor",
    "TelemetryDB",
    "ToolContext",
    "ToolDenied",
    "ToolError",
    "ToolHandler",
    "ToolOutput",
    "ToolRegistry",
    "ToolTimeout",
    "Totals",
    "__version__",
    "close_runtime",
    "create_runtime",
    "dispatch_prompt",
    "enqueue",
    "fan_out",
    "function_tool",
    "list_profiles",
    "load_profile",
    "open_supervisor",
    "race",
    "reconfigure_runtime",
    "run_prompt",
    "serve_supervisor",
    "serve_worker",
    "start_runtime",
]

# Silent by default, as a library should be: the CLI's --verbose (or the
# application's own logging configuration) decides where records go.
_logging.getLogger("rho_actors").addHandler(_logging.NullHandler())
