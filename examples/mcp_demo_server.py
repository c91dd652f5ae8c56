"""A small MCP server for examples/mcp_tools.py and the tests: stdio by default,
streamable HTTP with ``--http PORT``."""

from __future__ import annotations

import os
import sys
import time

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

app = MCPServer("demo")


@app.tool(annotations=ToolAnnotations(read_only_hint=True))
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool(annotations=ToolAnnotations(read_only_hint=True))
def whoami() -> str:
    """This server's process id."""
    return str(os.getpid())


@app.tool(annotations=ToolAnnotations(read_only_hint=True))
def slow(seconds: float) -> str:
    """Sleep, then answer (for cancellation tests)."""
    time.sleep(seconds)
    return "slept"


@app.tool(annotations=ToolAnnotations(read_only_hint=True))
def crash() -> str:
    """Kill this server mid-call (for connection-loss tests)."""
    os._exit(3)


@app.tool(annotations=ToolAnnotations(read_only_hint=True))
async def grow(ctx: Context) -> str:
    """Add a tool named 'extra' and tell the client the tool list changed."""

    def extra() -> str:
        """A tool that appeared later."""
        return "extra!"

    app.add_tool(extra, annotations=ToolAnnotations(read_only_hint=True))
    # Subscribers (protocol 2026-07-28), and the unasked notification of
    # earlier protocol versions.
    await ctx.notify_tools_changed()
    await ctx.session.send_tool_list_changed()
    return "grown"


@app.tool()
def write_note(text: str) -> str:
    """Write a note (not read-only)."""
    return f"wrote {text}"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--http":
        app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
