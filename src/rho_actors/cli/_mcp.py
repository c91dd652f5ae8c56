"""``rho-actors mcp list [CONFIG]``: what each MCP server of an agent offers.

Connects to every server of the agent (from CONFIG, ``--config``, and
``--mcp`` flags), lists its tools with their read-only annotation and
whether the agent's profile offers them, and disconnects.
"""

from __future__ import annotations

import argparse

import trio

from .._mcp import serve_mcp, tools_for
from ._common import EXIT_ERROR, EXIT_OK, UsageError, build_agent, config_from_flags, plural


def list_main(args: argparse.Namespace) -> int:
    if args.config is None and getattr(args, "config_file", None):
        args.config = args.config_file
    agent = build_agent(config_from_flags(args))
    if not agent.mcp_servers:
        raise UsageError("no MCP servers: give a CONFIG with mcp_servers, or --mcp NAME=COMMAND")

    async def run() -> int:
        status = EXIT_OK
        async with serve_mcp() as servers:
            for spec in agent.mcp_servers:
                try:
                    listed = await servers.tools(spec)
                except Exception as exc:
                    print(f"{spec.name}: not available: {exc}")
                    status = EXIT_ERROR
                    continue
                offered = {t.tool for t in tools_for(spec, listed, agent.profile)}
                print(f"{spec.name}: {plural(len(listed), 'tool')}")
                for tool in listed:
                    hints = getattr(tool, "annotations", None)
                    readonly = "read-only" if getattr(hints, "read_only_hint", None) else "writes"
                    mark = (
                        "offered" if tool.name in offered else f"not offered ({agent.profile.name})"
                    )
                    first = (tool.description or "").strip().splitlines()
                    print(f"  {tool.name:<24} {readonly:<9} {mark:<24} {first[0] if first else ''}")
        return status

    return trio.run(run)
