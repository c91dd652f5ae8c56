"""Tool handlers and the per-agent tool registry.

A *tool handler* is anything with a name, a description, a JSON schema for its
parameters and an async ``handle``. Plain typed ``async def`` functions become
handlers through :func:`function_tool`, which derives the schema from the
signature and the docstring, so the common case needs no boilerplate.

:class:`ToolRegistry` is the *catalogue* of an agent's tools (the seed's
``agent.registry``). Executing them is the Registry actor's job
(``_registry.py``): the catalogue says what exists, the actor decides how and
when it runs.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import typing
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import attrs

from ._errors import ConfigError
from ._schema import schema_for

JSONSchema = Mapping[str, Any]


@attrs.frozen(kw_only=True, slots=True)
class ToolContext:
    """What a handler may know about the call it serves.

    ``working_dir`` is where file and shell tools act; ``profile`` is the
    permission profile in force for this call (``None`` for no restrictions
    beyond the handler's own).
    """

    session_id: str
    call_id: str
    working_dir: Path
    profile: Any = None
    extras: Mapping[str, Any] = attrs.field(factory=dict)
    # The capability to start a child session (for the delegate tool); the
    # session itself is never handed to a tool.
    delegation: Any = None
    # On the Daytona backend: the capability to reach the session's sandbox
    # (``await ctx.sandbox.get()``); None on the local backend.
    sandbox: Any = None
    # The supervisor's MCP connections, for MCP tools (``rho_actors._mcp``).
    mcp: Any = None


@attrs.frozen(kw_only=True, slots=True)
class ToolOutput:
    """The result of a tool call, as the model will read it.

    ``is_error`` marks results the model should treat as failures; they are
    still results (the run goes on), never exceptions.
    """

    content: str
    is_error: bool = False
    metadata: Mapping[str, Any] = attrs.field(factory=dict)


@runtime_checkable
class ToolHandler(Protocol):
    """The interface every tool implements.

    ``readonly`` tools may run in parallel with the other read-only calls of
    the same assistant turn; anything that changes the world runs alone, in
    the order the model asked for it. ``requires_approval`` asks the
    approval machinery to hold the call until a decision arrives.

    Two optional attributes tune execution in the Registry: ``timeout``
    (seconds; default 300) bounds a call, and ``uses_subprocess = True``
    counts calls against the global limit on concurrent subprocesses.
    """

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def parameters(self) -> JSONSchema: ...

    @property
    def requires_approval(self) -> bool: ...

    @property
    def readonly(self) -> bool: ...

    async def handle(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput | str: ...


def tool_spec(handler: ToolHandler) -> dict[str, Any]:
    """The Chat Completions ``tools`` entry for ``handler``."""
    return {
        "type": "function",
        "function": {
            "name": handler.name,
            "description": handler.description,
            "parameters": dict(handler.parameters),
        },
    }


_FUNCTION_TOOLS: weakref.WeakKeyDictionary[
    Callable[..., Any], dict[tuple[Any, ...], FunctionTool]
] = weakref.WeakKeyDictionary()

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ToolRegistry:
    """The tools an agent offers to its model, by name.

    Registration order is kept: it is the order the model sees the tools in.
    """

    def __init__(self, handlers: typing.Iterable[ToolHandler] = ()) -> None:
        self._handlers: dict[str, ToolHandler] = {}
        self._specs: list[dict[str, Any]] | None = None
        for handler in handlers:
            self.register(handler)

    @classmethod
    def of_checked(cls, handlers: typing.Iterable[ToolHandler]) -> ToolRegistry:
        """A registry of handlers already known to be valid (the built-ins):
        every Agent starts from one, so it skips the checks ``register`` makes."""
        registry = cls()
        registry._handlers = {h.name: h for h in handlers}
        return registry

    def register(self, handler: ToolHandler | Callable[..., Awaitable[Any]]) -> ToolHandler:
        """Add a tool; a plain ``async def`` is wrapped with :func:`function_tool`.

        Registering a name twice replaces the earlier tool, so a custom tool
        can override a built-in one.
        """
        tool: ToolHandler
        # Duck-typed on purpose: isinstance() against a runtime-checkable
        # Protocol inspects every member and costs tens of microseconds.
        if hasattr(handler, "handle") and hasattr(handler, "parameters"):
            tool = cast(ToolHandler, handler)
        elif callable(handler):
            tool = function_tool(handler)
        else:
            raise TypeError(f"cannot register {handler!r} as a tool")
        if not _TOOL_NAME.match(tool.name):
            raise ConfigError(
                f"invalid tool name {tool.name!r}",
                key="name",
                expected="1-64 letters, digits, '_' or '-'",
            )
        self._handlers[tool.name] = tool
        self._specs = None
        return tool

    def unregister(self, name: str) -> None:
        self._handlers.pop(name, None)
        self._specs = None

    def get(self, name: str) -> ToolHandler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return list(self._handlers)

    def specs(self) -> list[dict[str, Any]]:
        """Tool specs for the request body, cached until the registry changes."""
        if self._specs is None:
            self._specs = [tool_spec(h) for h in self._handlers.values()]
        return self._specs

    def copy(self) -> ToolRegistry:
        return ToolRegistry(self._handlers.values())

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[ToolHandler]:
        return iter(list(self._handlers.values()))

    def __len__(self) -> int:
        return len(self._handlers)


# --- function tools ---------------------------------------------------------


@attrs.frozen(kw_only=True, slots=True)
class FunctionTool:
    """A tool made from a typed ``async def``; see :func:`function_tool`."""

    name: str
    description: str
    parameters: JSONSchema
    fn: Callable[..., Awaitable[Any]]
    requires_approval: bool = False
    readonly: bool = False
    wants_context: bool = False
    timeout: float | None = None

    async def handle(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput | str:
        kwargs = dict(args)
        if self.wants_context:
            kwargs["ctx"] = ctx
        result = await self.fn(**kwargs)
        if isinstance(result, ToolOutput):
            return result
        return result if isinstance(result, str) else _render(result)


def _render(value: Any) -> str:
    import json

    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def function_tool(
    fn: Callable[..., Awaitable[Any]] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    readonly: bool = False,
    timeout: float | None = None,
) -> Any:
    """Turn a typed ``async def`` into a tool handler.

    The JSON schema comes from the annotations (``str``, ``int``, ``float``,
    ``bool``, ``list[...]``, ``dict``, ``Literal[...]``, enums, ``X | None``);
    parameters without a default are required. The description is the first
    paragraph of the docstring; per-parameter descriptions are read from a
    Google-style ``Args:`` section. A parameter named ``ctx`` receives the
    :class:`ToolContext` and is hidden from the model.

    Usable bare (``function_tool(fn)``) or as a decorator factory
    (``@function_tool(requires_approval=True, timeout=30)``).
    """

    def build(f: Callable[..., Awaitable[Any]]) -> FunctionTool:
        # Deriving the schema from the signature and docstring is most of
        # what building an agent with custom tools costs; a function and its
        # options always give the same (immutable) tool.
        key = (name, description, requires_approval, readonly, timeout)
        try:
            cached = _FUNCTION_TOOLS[f].get(key)
        except (KeyError, TypeError):
            cached = None
        if cached is not None:
            return cached
        tool = _build_function_tool(f)
        with contextlib.suppress(TypeError):  # not weak-referenceable: not cached
            _FUNCTION_TOOLS.setdefault(f, {})[key] = tool
        return tool

    def _build_function_tool(f: Callable[..., Awaitable[Any]]) -> FunctionTool:
        if not inspect.iscoroutinefunction(f):
            raise ConfigError(
                f"tool {getattr(f, '__name__', f)!r} must be an async function",
                expected="async def",
            )
        doc = inspect.getdoc(f) or ""
        summary, arg_docs = _parse_docstring(doc)
        hints = typing.get_type_hints(f)
        properties: dict[str, Any] = {}
        required: list[str] = []
        wants_context = False
        for pname, param in inspect.signature(f).parameters.items():
            if pname == "ctx":
                wants_context = True
                continue
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise ConfigError(
                    f"tool {f.__name__!r}: *args/**kwargs cannot be described to a model",
                    key=pname,
                    expected="named parameters",
                )
            schema = schema_for(hints.get(pname, Any), where=f"{f.__name__}.{pname}", records=False)
            if pname in arg_docs:
                schema["description"] = arg_docs[pname]
            if param.default is inspect.Parameter.empty:
                required.append(pname)
            elif param.default is not None and isinstance(param.default, str | int | float | bool):
                schema["default"] = param.default
            properties[pname] = schema
        parameters: dict[str, Any] = {
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": False,
        }
        return FunctionTool(
            name=name or f.__name__,
            description=description or summary or f.__name__,
            parameters=parameters,
            fn=f,
            requires_approval=requires_approval,
            readonly=readonly,
            wants_context=wants_context,
            timeout=timeout,
        )

    if fn is None:
        return build
    return build(fn)


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into its summary paragraph and ``Args:`` entries."""
    paragraphs = doc.split("\n\n")
    summary = paragraphs[0].strip().replace("\n", " ") if paragraphs else ""
    if summary.lower().startswith("args:"):
        summary = ""
    arg_docs: dict[str, str] = {}
    in_args = False
    current: str | None = None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.lower() in ("args:", "arguments:", "parameters:"):
            in_args = True
            continue
        if not in_args:
            continue
        if stripped.endswith(":") and " " not in stripped:  # next section
            break
        match = re.match(r"^(\w+)(?:\s*\([^)]*\))?\s*:\s*(.*)$", stripped)
        if match and line.startswith((" ", "\t")) and _indent(line) <= 4:
            current = match.group(1)
            arg_docs[current] = match.group(2)
        elif current and stripped:
            arg_docs[current] = f"{arg_docs[current]} {stripped}".strip()
    return summary, arg_docs


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())
