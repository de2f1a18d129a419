"""`orderspace-pipelines`: the command line of the public contract.

    orderspace-pipelines sandbox [flags]          run the sandbox Orderspace API
    orderspace-pipelines sync [--since D] [--select A,B]
    orderspace-pipelines push FILE
    orderspace-pipelines demo                     what `make demo` runs after setup
    orderspace-pipelines dev                      the Dagster UI against the sandbox (what `make dev` runs)

Configuration errors (a missing variable, a bad date) end with one clear line and exit code 2,
never a stack trace.

`push FILE` exits 0 when every row was done (pushed, already right, superseded, or the file was a
duplicate), 3 when some rows were rejected or refused (the report names them), 4 when the whole file was
rejected (nothing pushed), 5 when the push stopped on an unexpected error (the file is in rejected/ with a
report of what was sent; drop it again to push the rest), 1 when it did not finish (Orderspace down: the file
stays in warehouse/work/ and the same command resumes it), 2 for a missing file or configuration.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from orderspace_pipelines.settings import ConfigurationError


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _parse_select(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orderspace-pipelines", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser(
        "sandbox", help="run the sandbox Orderspace API (see `sandbox --help`)", add_help=False
    ).add_argument("sandbox_args", nargs=argparse.REMAINDER)

    sync = commands.add_parser("sync", help="materialize the pull assets through Dagster")
    sync.add_argument(
        "--since", type=_parse_date, help="first day to pull (default: everything the account holds)"
    )
    sync.add_argument(
        "--select", type=_parse_select, help="comma-separated assets/tables, e.g. orders,customers"
    )

    push = commands.add_parser(
        "push",
        help="run the warehouse push job for one file (exit 0 all rows done, 3 some rows rejected, "
        "4 file rejected, 5 stopped by an unexpected error, 1 not finished)",
    )
    push.add_argument("file", type=Path)

    demo = commands.add_parser(
        "demo", help="sandbox + full pull + warehouse push of the sample files + summary"
    )
    demo.add_argument("--scale", default="small", choices=["tiny", "small", "large"])
    demo.add_argument("--rate-limit", type=int, default=60, help="sandbox (and client) requests per window")
    demo.add_argument("--rate-window", type=float, default=60.0, help="rate window in seconds")

    dev = commands.add_parser("dev", help="Dagster UI (webserver + daemon) against the sandbox")
    dev.add_argument("--port", type=int, default=3000)
    dev.add_argument("--scale", default="small", choices=["tiny", "small", "large"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sandbox"]:  # the sandbox owns its flags (and its --help)
        from orderspace_pipelines.sandbox import main as sandbox_main

        return sandbox_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx logs every request URL at INFO; ours are secret-free but noisy.
    # and Dagster's storage migrations (alembic) narrate every new instance database.
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "sync":
            from orderspace_pipelines.local_stack import sync_command

            return sync_command(since=args.since, select=args.select)
        if args.command == "push":
            from orderspace_pipelines.local_stack import push_command

            return push_command(args.file)
        if args.command == "demo":
            from orderspace_pipelines.local_stack import demo_command

            return demo_command(scale=args.scale, rate_limit=args.rate_limit, rate_window=args.rate_window)
        if args.command == "dev":
            from orderspace_pipelines.local_stack import dev_command

            return dev_command(port=args.port, scale=args.scale)
    except ConfigurationError as error:
        print(f"orderspace-pipelines: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
