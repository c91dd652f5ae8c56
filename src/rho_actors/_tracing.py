"""OpenTelemetry spans for runs, model calls and tool calls, when available.

``opentelemetry-api`` is optional: without it every span is a no-op and
costs one ``None`` check. With it, spans go to whatever tracer provider the
application configured (none configured means the API's own no-op).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_trace: Any
try:
    import opentelemetry.trace as _trace
except ImportError:
    _trace = None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span named ``name``; attributes with a None value are left out."""
    if _trace is None:
        yield None
        return
    tracer = _trace.get_tracer("rho_actors")
    clean = {k: v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, attributes=clean) as current:
        yield current


def set_attributes(current: Any, **attributes: Any) -> None:
    if current is not None:
        current.set_attributes({k: v for k, v in attributes.items() if v is not None})
