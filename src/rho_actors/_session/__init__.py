"""Sessions: the seed's ``Session`` facade over a session actor.

``_facade`` (the public API) is built on ``_actor`` (the actor: its loop,
handlers, hosting and hibernation), which keeps its records in a
``_journal`` and is watched and addressed through ``_streams`` (event
streams, monitors, refs). The agent loop a run executes is ``rho_actors._run``.
"""

from ._actor import ApprovalCallback as ApprovalCallback
from ._facade import Session as Session
from ._handle import RunEvents as RunEvents
from ._handle import RunHandle as RunHandle
from ._handle import RunStream as RunStream
from ._streams import EVENT_STREAM_CAPACITY as EVENT_STREAM_CAPACITY
from ._streams import EventStream as EventStream
from ._streams import EventStreamOverflow as EventStreamOverflow
from ._streams import SessionMonitor as SessionMonitor
from ._streams import SessionRef as SessionRef

__all__ = [
    "EVENT_STREAM_CAPACITY",
    "ApprovalCallback",
    "EventStream",
    "EventStreamOverflow",
    "RunEvents",
    "RunHandle",
    "RunStream",
    "Session",
    "SessionMonitor",
    "SessionRef",
]
