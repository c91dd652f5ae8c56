"""MCP servers as supervised connections, and their tools as the agent's tools.

The ``mcp`` SDK (v2, on anyio, so it runs on trio) requires a client session
to be entered and left by the same task: that task is a connection's owner
here, one per server configuration, started lazily in the supervisor's
:func:`serve_mcp` nursery and shared by every session of the supervisor
that uses the same server. Tool calls are made by the calling tasks on the
shared session, so cancelling a run cancels its calls in the SDK itself,
which tells the server (``notifications/cancelled``).

A call that finds the connection gone (the subprocess died, the HTTP
session dropped) fails with a tool error naming the server, and marks the
connection lost: its owner leaves the session (stopping a stdio
subprocess), and the next call connects again, after a backoff when
connections keep failing. When the supervisor ends, every owner leaves its
session, so no stdio subprocess outlives it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal

import attrs
import trio

from ._errors import ConfigError, ToolError
from ._profiles import PermissionProfile
from ._tools import ToolContext, ToolOutput

__all__ = ["McpServerSpec", "McpServers", "McpTool", "serve_mcp", "tool_name", "tools_for"]

# How long connecting (start, initialize, list tools) may take.
logger = logging.getLogger("rho_actors.mcp")

CONNECT_TIMEOUT = 30.0
BACKOFF_MAX = 30.0
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
ApprovalPolicy = Literal["auto", "always", "never"]


@attrs.frozen(kw_only=True)
class McpServerSpec:
    """One MCP server an agent uses: a stdio command or a streamable-HTTP URL."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    env: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()
    approval: ApprovalPolicy = "auto"

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes two specs the same connection (filters and policy aside)."""
        return (
            self.command,
            self.args,
            tuple(sorted(self.env.items())),
            self.cwd,
            self.url,
            tuple(sorted(self.headers.items())),
        )

    @classmethod
    def from_mapping(cls, data: Any, *, source: str | None, index: int) -> McpServerSpec:
        where = f"mcp_servers[{index}]"

        def bad(key: str, expected: str) -> ConfigError:
            value = data.get(key) if isinstance(data, Mapping) else data
            return ConfigError(
                f"got {value!r}", file=source, key=f"{where}.{key}", expected=expected
            )

        if not isinstance(data, Mapping):
            raise ConfigError(
                f"got {data!r}",
                file=source,
                key=where,
                expected="a mapping with name and command or url",
            )
        known = {
            "name",
            "command",
            "args",
            "env",
            "cwd",
            "url",
            "headers",
            "allow",
            "deny",
            "approval",
        }
        for key in data:
            if key not in known:
                raise bad(str(key), "one of " + ", ".join(sorted(known)))
        name = data.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise bad("name", "letters, digits, '_' or '-' (at most 32)")
        command, url = data.get("command"), data.get("url")
        if (command is None) == (url is None):
            raise bad("command", "a command (stdio) or a url (streamable HTTP), not both")
        if command is not None and not (isinstance(command, str) and command):
            raise bad("command", "the program to run")
        if url is not None and not (
            isinstance(url, str) and url.startswith(("http://", "https://"))
        ):
            raise bad("url", "an http:// or https:// URL")
        for key in ("args", "allow", "deny"):
            value = data.get(key)
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise bad(key, "a list of strings")
        for key in ("env", "headers"):
            value = data.get(key)
            if value is not None and not (
                isinstance(value, Mapping)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
            ):
                raise bad(key, "a mapping of strings")
        approval = data.get("approval", "auto")
        if approval not in ("auto", "always", "never"):
            raise bad("approval", "auto, always or never")
        allow = data.get("allow")
        return cls(
            name=name,
            command=command,
            args=tuple(data.get("args") or ()),
            env=dict(data.get("env") or {}),
            cwd=data.get("cwd"),
            url=url,
            headers=dict(data.get("headers") or {}),
            allow=None if allow is None else tuple(allow),
            deny=tuple(data.get("deny") or ()),
            approval=approval,
        )

    def offers(self, tool: str) -> bool:
        """Whether this spec's allow/deny lists let the agent use ``tool``."""
        if self.allow is not None and tool not in self.allow:
            return False
        return tool not in self.deny


def tool_name(server: str, tool: str) -> str:
    """``{server}__{tool}``, within the model APIs' name rules (``[A-Za-z0-9_-]{1,64}``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", tool)
    return f"{server}__{cleaned}"[:64]


class _Connection:
    """One server's session and the task that owns it."""

    def __init__(self, spec: McpServerSpec) -> None:
        self.spec = spec
        self.session: Any = None
        self.tools: list[Any] = []
        self.error: str | None = None
        self._wanted = trio.Event()
        self._ready = trio.Event()
        self._lost = trio.Event()
        self._failures = 0
        self._attempts = 0
        # Bumped when the server says its tool list changed: sessions then
        # list the tools again before their next run.
        self.version = 0
        self.stale = False

    async def _watch_tool_list(self, session: Any) -> None:
        """Subscribe to the server's tool-list changes (protocol 2026-07-28 and
        later); older servers send the notification unasked (:meth:`on_message`)."""
        try:
            from mcp.client.subscriptions import ListenNotSupportedError, listen
        except ImportError:
            return
        try:
            async with listen(session, tools_list_changed=True) as events:
                async for _ in events:
                    self.stale = True
                    self.version += 1
        except ListenNotSupportedError:
            return
        except Exception:
            return

    async def on_message(self, message: Any) -> None:
        """The SDK's message handler: notices ``notifications/tools/list_changed``."""
        inner = getattr(message, "root", message)
        method = getattr(inner, "method", "")
        if method == "notifications/tools/list_changed" or type(inner).__name__ == (
            "ToolListChangedNotification"
        ):
            self.stale = True
            self.version += 1
        await trio.lowlevel.checkpoint()

    async def ensure(self) -> Any:
        """The live session, connecting (or reconnecting) first if needed.

        A failure counts only if a connection attempt began after this call
        asked: a waiter woken by the end of the connection that was already
        closing asks again.
        """
        asked = self._attempts
        with trio.move_on_after(CONNECT_TIMEOUT + BACKOFF_MAX + 5):
            while True:
                if self.session is not None and not self._lost.is_set():
                    return self.session
                self._wanted.set()
                await self._ready.wait()
                if self.session is None and self._attempts > asked:
                    break
        raise ToolError(
            f"MCP server {self.spec.name!r} is not available: {self.error or 'no connection'}"
        )

    def lost(self, why: str) -> None:
        """A call found the connection gone: let the owner close it; the next call reconnects."""
        logger.warning("MCP server %r: connection lost (%s)", self.spec.name, why)
        self.error = why
        self._lost.set()

    async def run(self) -> None:
        while True:
            await self._wanted.wait()
            if self._failures:
                await trio.sleep(min(BACKOFF_MAX, 0.5 * 2 ** (self._failures - 1)))
            self._attempts += 1
            try:
                async with (
                    _open(self.spec, self.on_message) as session,
                    trio.open_nursery() as watchers,
                ):
                    with trio.fail_after(CONNECT_TIMEOUT):
                        await session.initialize()
                        self.tools = list((await session.list_tools()).tools)
                    watchers.start_soon(self._watch_tool_list, session)
                    if self._attempts > 1:
                        logger.info("MCP server %r: reconnected", self.spec.name)
                    self.session, self.error, self._failures = session, None, 0
                    self._ready.set()
                    await self._lost.wait()
                    watchers.cancel_scope.cancel(reason="leaving the MCP session")
            except Exception as exc:
                self.error = _describe(exc)
                self._failures += 1
                logger.warning(
                    "MCP server %r: connection failed (%s); attempt %d",
                    self.spec.name,
                    self.error,
                    self._failures,
                )
            finally:
                self.session = None
                self._lost = trio.Event()
                self._wanted = trio.Event()
                ready, self._ready = self._ready, trio.Event()
                ready.set()  # waiters see the failure (session None) and report it


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        leaves = list(exc.exceptions)
        if leaves:
            return _describe(leaves[0])
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.asynccontextmanager
async def _open(spec: McpServerSpec, on_message: Any) -> AsyncIterator[Any]:
    try:
        from mcp import ClientSession
    except ImportError:
        raise ToolError("MCP servers need the mcp package: pip install 'rho-actors[mcp]'") from None

    if spec.command is not None:
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(
            command=spec.command, args=list(spec.args), env=dict(spec.env) or None, cwd=spec.cwd
        )
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            yield session
    else:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        assert spec.url is not None
        async with (
            httpx2.AsyncClient(headers=dict(spec.headers), timeout=None) as http,
            streamable_http_client(spec.url, http_client=http) as streams,
            ClientSession(streams[0], streams[1], message_handler=on_message) as session,
        ):
            yield session


class McpServers:
    """The MCP connections of one supervisor, by server configuration."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self._connections: dict[tuple[Any, ...], _Connection] = {}

    def _connection(self, spec: McpServerSpec) -> _Connection:
        found = self._connections.get(spec.key)
        if found is None:
            found = self._connections[spec.key] = _Connection(spec)
            self._nursery.start_soon(found.run)
        return found

    async def tools(self, spec: McpServerSpec) -> list[Any]:
        """The server's tools (connecting first if needed; listed again after the
        server said they changed)."""
        connection = self._connection(spec)
        session = await connection.ensure()
        if connection.stale:
            connection.stale = False
            connection.tools = list((await session.list_tools()).tools)
        return connection.tools

    def version(self, spec: McpServerSpec) -> int:
        """How many times the server's tool list changed (0 before it connects)."""
        found = self._connections.get(spec.key)
        return found.version if found is not None else 0

    async def call(self, spec: McpServerSpec, tool: str, arguments: Mapping[str, Any]) -> Any:
        """Call ``tool``; a lost connection is a ToolError, and the next call reconnects."""
        connection = self._connection(spec)
        session = await connection.ensure()
        try:
            return await session.call_tool(tool, dict(arguments))
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:
            if _is_connection_loss(exc):
                connection.lost(_describe(exc))
                raise ToolError(
                    f"MCP server {spec.name!r} lost its connection during {tool!r} "
                    f"({_describe(exc)}); the next call reconnects"
                ) from exc
            raise ToolError(f"MCP server {spec.name!r}: {tool!r} failed: {_describe(exc)}") from exc


def _is_connection_loss(exc: BaseException) -> bool:
    import anyio

    if isinstance(exc, anyio.ClosedResourceError | anyio.BrokenResourceError | EOFError):
        return True
    text = str(exc).lower()
    return "connection closed" in text or "connection lost" in text or "disconnected" in text


@contextlib.asynccontextmanager
async def serve_mcp() -> AsyncIterator[McpServers]:
    """MCP connections for the block's duration; leaving it closes them all."""
    async with trio.open_nursery() as nursery:
        try:
            yield McpServers(nursery)
        finally:
            nursery.cancel_scope.cancel(reason="the supervisor is shutting down")


def specs_from_config(value: Sequence[Any] | None, *, source: str | None) -> list[McpServerSpec]:
    """The ``mcp_servers`` config entries as specs; names must be unique."""
    specs = [
        spec
        if isinstance(spec, McpServerSpec)
        else McpServerSpec.from_mapping(spec, source=source, index=i)
        for i, spec in enumerate(value or ())
    ]
    names = [s.name for s in specs]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"two servers named {name!r}",
                file=source,
                key="mcp_servers",
                expected="unique names",
            )
    return specs


@attrs.frozen(kw_only=True)
class McpTool:
    """One MCP server tool, offered to the model as ``{server}__{tool}``."""

    spec: McpServerSpec
    tool: str
    name: str
    description: str
    parameters: Mapping[str, Any]
    readonly: bool
    requires_approval: bool
    timeout: float = 300.0

    async def handle(self, args: Mapping[str, Any], ctx: ToolContext) -> ToolOutput:
        servers = ctx.mcp
        if servers is None:
            return ToolOutput(content=f"{self.name}: no MCP connections here", is_error=True)
        try:
            result = await servers.call(self.spec, self.tool, args)
        except ToolError as exc:
            return ToolOutput(
                content=str(exc), is_error=True, metadata={"mcp_server": self.spec.name}
            )
        return ToolOutput(
            content=_text_of(result) or "(no output)",
            is_error=bool(getattr(result, "is_error", False)),
            metadata={"mcp_server": self.spec.name},
        )


def _text_of(result: Any) -> str:
    parts: list[str] = []
    for block in getattr(result, "content", None) or ():
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
        else:
            parts.append(f"[{getattr(block, 'type', 'content')} content]")
    if not parts:
        structured = getattr(result, "structured_content", None)
        if structured is not None:
            parts.append(json.dumps(structured, ensure_ascii=False))
    return "\n".join(parts)


def tools_for(
    spec: McpServerSpec, listed: Sequence[Any], profile: PermissionProfile
) -> list[McpTool]:
    """The tools of one server the agent is offered, under its profile.

    A profile that cannot write files (``readonly`` and its kind) is offered
    only tools the server annotates ``readOnlyHint`` unless its ``tools``
    list names others. Under ``approval: dangerous`` a tool waits for a
    decision unless it is read-only; the server's ``approval`` policy can
    make that ``always`` or ``never``.
    """
    offered: list[McpTool] = []
    for tool in listed:
        if not spec.offers(tool.name):
            continue
        name = tool_name(spec.name, tool.name)
        annotations = getattr(tool, "annotations", None)
        readonly = bool(getattr(annotations, "read_only_hint", None))
        if not profile.allows_tool(name):
            continue
        named = profile.tools is not None and name in profile.tools
        if profile.file_write == "off" and not readonly and not named:
            continue
        if spec.approval == "always":
            approval = True
        elif spec.approval == "never":
            approval = False
        else:
            approval = profile.approval == "dangerous" and not readonly
        schema = dict(getattr(tool, "input_schema", None) or {"type": "object"})
        offered.append(
            McpTool(
                spec=spec,
                tool=tool.name,
                name=name,
                description=(tool.description or f"{tool.name} (MCP server {spec.name})")[:1024],
                parameters=schema,
                readonly=readonly,
                requires_approval=approval,
            )
        )
    return offered
