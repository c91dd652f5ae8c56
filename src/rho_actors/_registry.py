"""The Registry actor: where tool calls are executed.

Sessions never run a tool themselves. They send an :class:`Invoke` and wait
for the reply; the Registry parses and validates the arguments, applies the
concurrency limits and the time limit, runs the handler in its own nursery
and answers. Keeping execution in one actor is what makes the limits global
(one subprocess budget for every session) and lets the Registry stop work
whose caller has gone away.

Bad input never escapes as an exception: malformed JSON, arguments that do
not match the schema, an unknown tool, a handler that raises — each becomes a
:class:`ToolOutput` with ``is_error=True`` that the model reads.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from typing import Any, assert_never

import attrs
import jsonschema
import trio

from ._actor import Mailbox, Reply
from ._tools import ToolContext, ToolHandler, ToolOutput

DEFAULT_TOOL_TIMEOUT = 300.0
DEFAULT_MAX_SUBPROCESSES = 16
REGISTRY_MAILBOX_CAPACITY = 1024


class Ticket:
    """Links a caller to the work it asked for, so either side can stop it.

    The caller calls :meth:`abandon` when it is cancelled; the Registry
    registers the cancel scope of the running handler, which ``abandon``
    cancels. No watcher task is needed.
    """

    __slots__ = ("_scope", "abandoned")

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None
        self.abandoned = False

    def attach(self, scope: trio.CancelScope) -> None:
        self._scope = scope
        if self.abandoned:
            scope.cancel(reason="the caller went away")

    def abandon(self) -> None:
        self.abandoned = True
        if self._scope is not None:
            self._scope.cancel(reason="the caller went away")


@attrs.frozen(kw_only=True, slots=True)
class Invoke:
    handler: ToolHandler | None
    tool_name: str
    arguments: str | Mapping[str, Any]
    ctx: ToolContext
    ticket: Ticket
    reply: Reply[ToolOutput]
    timeout: float | None = None


RegistryMessage = Invoke


@attrs.frozen(kw_only=True, slots=True)
class ParsedArgs:
    args: dict[str, Any] | None
    error: str | None


def parse_arguments(raw: str | Mapping[str, Any], handler: ToolHandler) -> ParsedArgs:
    """JSON-decode, coerce and validate a call's arguments against the tool's schema."""
    if isinstance(raw, Mapping):
        args: Any = dict(raw)
    else:
        text = raw.strip()
        if not text:
            args = {}
        else:
            try:
                args = json.loads(text)
            except ValueError as exc:
                shown = text if len(text) <= 200 else text[:200] + "..."
                return ParsedArgs(
                    args=None,
                    error=f"invalid JSON in the arguments of {handler.name!r}: {exc}. "
                    f"You sent: {shown}",
                )
    if not isinstance(args, dict):
        return ParsedArgs(
            args=None,
            error=f"the arguments of {handler.name!r} must be a JSON object, "
            f"got {type(args).__name__}",
        )
    schema = handler.parameters
    args = coerce_arguments(args, schema)
    try:
        _validator(schema).validate(args)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path) or "(arguments)"
        return ParsedArgs(
            args=None, error=f"invalid arguments for {handler.name!r}: {where}: {exc.message}"
        )
    except jsonschema.SchemaError as exc:
        return ParsedArgs(
            args=None, error=f"tool {handler.name!r} has an invalid schema: {exc.message}"
        )
    return ParsedArgs(args=args, error=None)


_validators: dict[int, tuple[Mapping[str, Any], Any]] = {}


def _validator(schema: Mapping[str, Any]) -> Any:
    """A compiled validator per schema object (schemas are long-lived)."""
    found = _validators.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(dict(schema))
    validator = cls(dict(schema))
    _validators[id(schema)] = (schema, validator)
    return validator


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def coerce_arguments(args: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """Turn strings into the booleans and numbers the schema asks for.

    Models often send ``"true"`` or ``"5"``; rejecting those wastes a turn.
    Anything that does not convert cleanly is left for validation to report.
    """
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return args
    out = dict(args)
    for key, value in args.items():
        spec = properties.get(key)
        if not isinstance(spec, Mapping) or not isinstance(value, str):
            continue
        types = spec.get("type")
        wanted = set(types) if isinstance(types, list) else {types}
        text = value.strip()
        if "boolean" in wanted and text.lower() in _TRUE | _FALSE:
            out[key] = text.lower() in _TRUE
        elif "integer" in wanted:
            with contextlib.suppress(ValueError):
                out[key] = int(text)
        elif "number" in wanted:
            with contextlib.suppress(ValueError):
                out[key] = float(text)
    return out


class RegistryRef:
    """How sessions ask the Registry actor to run a tool."""

    __slots__ = ("_mailbox",)

    def __init__(self, mailbox: Mailbox[RegistryMessage]) -> None:
        self._mailbox = mailbox

    async def invoke(
        self,
        handler: ToolHandler | None,
        tool_name: str,
        arguments: str | Mapping[str, Any],
        ctx: ToolContext,
    ) -> ToolOutput:
        """Run one tool call; cancelling this call stops the tool."""
        ticket = Ticket()
        reply: Reply[ToolOutput] = Reply()
        message = Invoke(
            handler=handler,
            tool_name=tool_name,
            arguments=arguments,
            ctx=ctx,
            ticket=ticket,
            reply=reply,
        )
        what = f"tool {tool_name}"
        await self._mailbox.put(message, what=what, session_id=ctx.session_id)
        try:
            return await reply.wait(
                what=what,
                session_id=ctx.session_id,
                dropped="the registry stopped before the tool finished",
            )
        except BaseException:
            ticket.abandon()
            raise

    def close(self) -> None:
        self._mailbox.close()


async def _execute(msg: Invoke, process_limiter: trio.CapacityLimiter) -> None:
    started = time.perf_counter()
    handler = msg.handler
    output: ToolOutput
    if handler is None:
        output = ToolOutput(content=f"unknown tool {msg.tool_name!r}", is_error=True)
    else:
        parsed = parse_arguments(msg.arguments, handler)
        if parsed.error is not None or parsed.args is None:
            output = ToolOutput(content=parsed.error or "invalid arguments", is_error=True)
        else:
            output = await _run_handler(msg, handler, parsed.args, process_limiter)
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    output = attrs.evolve(output, metadata={**output.metadata, "duration_ms": duration_ms})
    msg.reply.send(output)


async def _run_handler(
    msg: Invoke,
    handler: ToolHandler,
    args: dict[str, Any],
    process_limiter: trio.CapacityLimiter,
) -> ToolOutput:
    timeout = msg.timeout or float(getattr(handler, "timeout", None) or DEFAULT_TOOL_TIMEOUT)
    with trio.CancelScope() as scope:
        msg.ticket.attach(scope)
        try:
            with trio.move_on_after(timeout) as deadline:
                if getattr(handler, "uses_subprocess", False):
                    async with process_limiter:
                        result = await handler.handle(args, msg.ctx)
                else:
                    result = await handler.handle(args, msg.ctx)
        except Exception as exc:
            return ToolOutput(
                content=f"tool {handler.name!r} failed: {type(exc).__name__}: {exc}",
                is_error=True,
                metadata={"exception": type(exc).__name__},
            )
        if deadline.cancelled_caught:
            return ToolOutput(
                content=f"tool {handler.name!r} timed out after {timeout:g} s and was stopped",
                is_error=True,
                metadata={"timed_out": True},
            )
        return result if isinstance(result, ToolOutput) else ToolOutput(content=str(result))
    # The caller went away: nobody reads the result.
    return ToolOutput(content="cancelled: the caller went away", is_error=True)


async def serve_registry(
    *,
    max_subprocesses: int = DEFAULT_MAX_SUBPROCESSES,
    task_status: trio.TaskStatus[RegistryRef] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the Registry actor; each call runs as a task in the actor's nursery."""
    mailbox: Mailbox[RegistryMessage] = Mailbox(REGISTRY_MAILBOX_CAPACITY)
    process_limiter = trio.CapacityLimiter(max_subprocesses)
    async with trio.open_nursery() as nursery:
        task_status.started(RegistryRef(mailbox))
        try:
            while True:
                try:
                    msg = await mailbox.get()
                except trio.EndOfChannel:
                    break
                match msg:
                    case Invoke():
                        if msg.ticket.abandoned:
                            msg.reply.drop()
                            continue
                        nursery.start_soon(_execute, msg, process_limiter)
                    case _:
                        assert_never(msg)
        finally:
            mailbox.close()
            for pending in mailbox.drain():
                pending.reply.drop()
