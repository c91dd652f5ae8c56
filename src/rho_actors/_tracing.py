"""OpenTelemetry spans for runs, model calls and tool calls, when available.

``opentelemetry-api`` is optional: without it, or before the application
sets a tracer provider, every span is a no-op and costs one check. Once a
provider is set, spans go to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_trace: Any
_NO_PROVIDER: tuple[type, ...] = ()
try:
    import opentelemetry.trace as _trace

    _NO_PROVIDER = (_trace.ProxyTracerProvider, _trace.NoOpTracerProvider)
except ImportError:
    _trace = None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span named ``name``; attributes with a None value are left out."""
    if _trace is None or isinstance(_trace.get_tracer_provider(), _NO_PROVIDER):
        # No tracer provider set up: the API's spans would be no-ops anyway,
        # but entering one still costs a context attach and detach per call.
        yield None
        return
    tracer = _trace.get_tracer("rho_actors")
    clean = {k: v for k, v in attributes.items() if v is not None}
    with tracer.start_as_current_span(name, attributes=clean) as current:
        yield current


def set_attributes(current: Any, **attributes: Any) -> None:
    if current is not None:
        current.set_attributes({k: v for k, v in attributes.items() if v is not None})
