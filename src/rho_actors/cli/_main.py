"""Argument parsing for ``rho-actors``; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import sys

import trio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rho-actors", description="A trio-native actor supervisor for LLM agents."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="run the offline demo against the embedded scripted model server"
    )
    demo.add_argument("--sessions", type=int, default=24, help="how many sessions to fan out")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import demo_main

        if args.sessions < 1:
            parser.error("--sessions: expected a positive integer")
        return trio.run(demo_main, args.sessions)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
