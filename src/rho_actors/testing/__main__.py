"""Run the scripted server in its own process.

Benchmarks do this so the server's CPU time is not charged to the client
being measured. The parent reads the ``READY <base_url>`` line from stdout to
learn the ephemeral port, and stops the server with SIGINT/SIGTERM or by
closing the pipe on our stdin (which also cleans up if the parent dies).

    python -m rho_actors.testing serve --port 0 --first-byte-ms 200 --chunk-ms 5

``--dialect llama.cpp`` answers as llama.cpp's server does (see ``Dialect``).

    python -m rho_actors.testing daytona --port 0 [--api-key K]

serves a fake Daytona API instead (see ``FakeDaytona``) and prints
``READY <api_url>``; it stops the same way.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import stat
import sys
from collections.abc import Sequence
from functools import partial

import trio

from ._daytona import FakeDaytona
from ._script import Dialect, benchmark_responder
from ._server import DEFAULT_BACKLOG, ScriptedServer


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rho_actors.testing",
        description="Scripted OpenAI-compatible model server for offline tests and benchmarks.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="serve the benchmark responder until SIGINT/SIGTERM or stdin closes",
        description=(
            "Answer a last user message with one tool call and anything else "
            "(a tool result) with text. Prints 'READY <base_url>' once listening."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    serve.add_argument("--backlog", type=int, default=DEFAULT_BACKLOG)
    serve.add_argument("--first-byte-ms", type=float, default=0.0, help="delay before headers")
    serve.add_argument("--chunk-ms", type=float, default=0.0, help="delay between SSE chunks")
    serve.add_argument("--chunk-size", type=int, default=8, help="characters per chunk")
    serve.add_argument("--tool-name", default="echo", help="tool the responder calls")
    serve.add_argument(
        "--tool-arg", default="text", help="argument that carries the user's text (e.g. command)"
    )
    serve.add_argument("--text-only", action="store_true", help="never call a tool")
    serve.add_argument(
        "--reply-text",
        default="The tool ran and returned its output.",
        help="text of the final (non tool call) reply",
    )
    serve.add_argument(
        "--dialect",
        choices=sorted(_DIALECTS),
        default="openai",
        help="whose wire format quirks to reproduce (default: openai)",
    )
    daytona = commands.add_parser(
        "daytona",
        help="serve a fake Daytona API until SIGINT/SIGTERM or stdin closes",
        description=(
            "A loopback Daytona API whose sandboxes are temporary directories on this "
            "machine. Prints 'READY <api_url>' once listening."
        ),
    )
    daytona.add_argument("--host", default="127.0.0.1")
    daytona.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    daytona.add_argument("--api-key", help="the key clients must send (default: any key)")
    daytona.add_argument(
        "--no-bwrap", action="store_true", help="run commands without bubblewrap even if it works"
    )
    return parser


_DIALECTS = {"openai": Dialect(), "llama.cpp": Dialect.llama_cpp()}


def _stdin_is_a_pipe() -> bool:
    # Only a pipe or socket on stdin means "a parent holds the other end".
    # A terminal or /dev/null (CI runs with no stdin) must not stop the server.
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


async def _stop_on_stdin_eof(cancel_scope: trio.CancelScope) -> None:
    async with trio.lowlevel.FdStream(os.dup(0)) as stdin:
        try:
            while await stdin.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass  # as good as closed
    cancel_scope.cancel(reason="stdin closed")


async def _stop_on_signal(
    cancel_scope: trio.CancelScope, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            cancel_scope.cancel(reason=f"received {signal.Signals(signum).name}")
            return


async def _serve(server: ScriptedServer, args: argparse.Namespace) -> None:
    async with trio.open_nursery() as nursery:
        # Signals are caught before announcing READY, so a parent that sends
        # SIGTERM as soon as it reads the line never kills us uncleanly.
        await nursery.start(_stop_on_signal, nursery.cancel_scope)
        if _stdin_is_a_pipe():
            nursery.start_soon(_stop_on_stdin_eof, nursery.cancel_scope)
        await nursery.start(
            partial(server.serve, host=args.host, port=args.port, backlog=args.backlog)
        )
        print(f"READY {server.base_url}", flush=True)


async def _serve_daytona(args: argparse.Namespace) -> None:
    fake = FakeDaytona(api_key=args.api_key, bwrap=False if args.no_bwrap else None)
    async with trio.open_nursery() as nursery:
        await nursery.start(_stop_on_signal, nursery.cancel_scope)
        if _stdin_is_a_pipe():
            nursery.start_soon(_stop_on_stdin_eof, nursery.cancel_scope)
        await nursery.start(partial(fake.serve, host=args.host, port=args.port))
        print(f"READY {fake.api_url}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "daytona":
        if args.api_key == "":
            parser.error("--api-key must not be empty")
        trio.run(_serve_daytona, args)
        return 0
    try:
        server = ScriptedServer(
            default=benchmark_responder(
                tool_name=args.tool_name,
                tool_arg=args.tool_arg,
                text_only=args.text_only,
                reply_text=args.reply_text,
            ),
            first_byte_delay=args.first_byte_ms / 1000,
            chunk_delay=args.chunk_ms / 1000,
            chunk_size=args.chunk_size,
            dialect=_DIALECTS[args.dialect],
        )
    except ValueError as exc:
        parser.error(str(exc))
    # With thousands of streams alive, the default thresholds make the
    # collector re-scan every live task and frame over and over: it cost more
    # than half of the server's CPU time in a 9,000-stream benchmark. This
    # process holds no reference cycles worth collecting promptly, so
    # collections are made rare and start-up objects are never scanned again.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    trio.run(_serve, server, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
