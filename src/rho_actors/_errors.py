"""The exceptions rho_actors raises.

Errors carry the session id and the operation that failed, so a log line is
enough to know *who* was doing *what*::

    RhoError
     ├── ActorError                  an actor cannot serve a request
     │    ├── ActorStopped           it stopped for good before answering (``reason``: why)
     │    │    └── MailboxClosed     the actor is gone; nothing will read the message
     │    └── ActorCrashed           the actor died while serving the request
     ├── SupervisionError            a supervisor gave up (restart intensity exceeded)
     ├── ToolError                   a tool call could not be carried out
     │    ├── ToolDenied             refused by the profile or by an approval decision
     │    ├── ToolTimeout            ran past its time limit
     │    └── InvalidToolArguments   arguments did not match the tool's schema
     ├── StoreError                  persistence failed (file, directory, database)
     ├── ConfigError(ValueError)     bad configuration: which file, which key, what was expected
     └── ModelError                  the model endpoint failed after retries

Tool errors raised inside a run never escape it: they become tool results the
model reads. Model errors end the run with ``status="error"``. Only errors in
the machinery itself (a crashed actor, a supervisor giving up) reach callers
as exceptions.
"""

from __future__ import annotations


class RhoError(Exception):
    """Base class of every error raised by rho_actors."""

    def __init__(
        self, message: str, *, session_id: str | None = None, operation: str | None = None
    ) -> None:
        self.message = message
        self.session_id = session_id
        self.operation = operation
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.session_id is not None:
            where.append(f"session {self.session_id}")
        if self.operation is not None:
            where.append(self.operation)
        return f"{self.message} ({', '.join(where)})" if where else self.message


class ActorError(RhoError):
    """An actor could not serve a request."""


class ActorStopped(ActorError):
    """The actor stopped for good before it answered the request.

    ``reason`` is why it stopped (``"stopped"``, ``"shut down (...)"``,
    ``"failed: ..."``). A run that was in flight is not reported this way: it
    returns ``RunResult(status="cancelled")``; this error is for requests the
    actor never got to.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        session_id: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.reason = reason
        if reason is not None:
            message = f"{message}: {reason}"
        super().__init__(message, session_id=session_id, operation=operation)


class MailboxClosed(ActorStopped):
    """The actor's mailbox is closed: it has stopped and will read nothing more."""


class ActorCrashed(ActorError):
    """The actor died while serving the request; the request's outcome is unknown."""


class SupervisionError(RhoError):
    """A supervisor exceeded its restart intensity and gave up.

    ``last_failure`` is the child failure that tipped it over.
    """

    def __init__(
        self,
        message: str,
        *,
        last_failure: BaseException | None = None,
        session_id: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.last_failure = last_failure
        super().__init__(message, session_id=session_id, operation=operation)


class ToolError(RhoError):
    """A tool call could not be carried out. Inside a run it becomes a tool result."""


class ToolDenied(ToolError):
    """The call was refused by the permission profile or an approval decision."""


class ToolTimeout(ToolError):
    """The call ran past its time limit and was stopped."""


class InvalidToolArguments(ToolError):
    """The arguments did not match the tool's JSON schema."""


class StoreError(RhoError):
    """Persistence failed. ``path`` names the file or database involved."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        session_id: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.path = path
        if path is not None:
            message = f"{message}: {path}"
        super().__init__(message, session_id=session_id, operation=operation)


class ConfigError(RhoError, ValueError):
    """Configuration is invalid: names the file, the key, and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.file = file
        self.key = key
        self.expected = expected
        parts = []
        if file is not None:
            parts.append(file)
        if key is not None:
            parts.append(f"key {key!r}")
        prefix = ": ".join(parts)
        text = f"{prefix}: {message}" if prefix else message
        if expected is not None:
            text = f"{text} (expected {expected})"
        super().__init__(text)


class ModelError(RhoError):
    """The model endpoint failed (after retries, where retrying made sense)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        session_id: str | None = None,
        operation: str | None = None,
    ) -> None:
        self.status_code = status_code
        super().__init__(message, session_id=session_id, operation=operation)


class ContextLengthExceeded(ModelError):
    """The request did not fit the model's context window."""


def single_exception(exc: Exception) -> Exception:
    """The one failure inside nested single-member exception groups.

    trio's nurseries wrap whatever escapes them in an ExceptionGroup; for
    reporting a crash, the failure itself is what a reader wants.
    """
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        inner = exc.exceptions[0]
        if not isinstance(inner, Exception):
            break
        exc = inner
    return exc


def require_trio(what: str) -> None:
    """Fail clearly when rho_actors is awaited from another event loop.

    Its actors, nurseries and cancel scopes are trio's: awaited from asyncio
    they fail deep inside trio with an obscure message. This says what to do
    instead, before anything starts.
    """
    import sniffio

    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return
    if library != "trio":
        raise RhoError(
            f"{what} was awaited from {library}; rho_actors runs on trio. Run your program "
            "with trio.run(main) (trio is installed with rho_actors), or, inside an asyncio "
            "program, call it through the trio-asyncio bridge (pip install trio-asyncio)"
        )
