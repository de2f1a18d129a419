"""`orderspace-pipelines`: the command line of the public contract.

    orderspace-pipelines sync [--since D] [--select A,B]
    orderspace-pipelines reconcile [--sweep-days N] [--full-cycle]
    orderspace-pipelines push FILE
    orderspace-pipelines sandbox [flags]          run the sandbox Orderspace API
    orderspace-pipelines demo                     what `make demo` runs after setup
    orderspace-pipelines dev                      the Dagster UI against the sandbox (what `make dev` runs)
    orderspace-pipelines webhooks serve|register URL|status   the change feed's receiver and subscription

Configuration errors (a missing variable, a bad date) end with one clear line and exit code 2,
never a stack trace.

`sandbox`, `demo` and `dev` run the development tools (the `orderspace_sandbox` and
`orderspace_devtools` packages, which the `dev` extra installs and the product does not ship); without
them, they say in one line how to install them and exit 2.

`push FILE` exits 0 when every row was done (pushed, already right, superseded, or the file was a
duplicate), 3 when some rows were rejected or refused (the report names them), 4 when the whole file was
rejected (nothing pushed), 5 when the push stopped on an unexpected error (the file is in rejected/ with a
report of what was sent; drop it again to push the rest), 6 when another process or host sharing the warehouse
folder has the file (pushing it now, or pushed it already; nothing was done here), 1 when it did not finish
(Orderspace down: the file stays in warehouse/work/ and the same command resumes it), 2 for a missing file or
configuration.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from types import ModuleType

from orderspace_pipelines.postgres import DatabaseError
from orderspace_pipelines.settings import ConfigurationError

DEV_TOOLS = ("orderspace_sandbox", "orderspace_devtools")
DEV_TOOLS_MISSING = (
    "orderspace-pipelines {command}: the development tools are not installed (they are not part of the "
    "product); from a checkout of the repository, install them with `make install` "
    "(or: pip install -e ./devtools -e '.[dev]')"
)


def _dev_tool(command: str, module: str) -> ModuleType | None:
    """Import a development-tools module, or say how to install them (one line on stderr) and return None."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in DEV_TOOLS:
            raise  # something else is missing: not ours to explain
        print(DEV_TOOLS_MISSING.format(command=command), file=sys.stderr)
        return None


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, at least 1, got {text!r}")
    return value


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

    reconcile = commands.add_parser(
        "reconcile",
        help="bring every table in line with the account without webhooks (updates and deletions); prints "
        "its request cost (exit 0 done, 1 failed)",
    )
    reconcile.add_argument(
        "--sweep-days",
        type=_positive_int,
        default=30,
        help="days of history this run's rolling deletion sweep covers (default 30)",
    )
    reconcile.add_argument(
        "--full-cycle", action="store_true", help="sweep the whole history in this run (costs more requests)"
    )

    push = commands.add_parser(
        "push",
        help="run the warehouse push job for one file (exit 0 all rows done, 3 some rows rejected, "
        "4 file rejected, 5 stopped by an unexpected error, 6 another process or host has the file, "
        "1 not finished)",
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
    dev.add_argument("--activity", type=float, default=6.0, help="sandbox changes a minute, sent as webhooks")
    dev.add_argument(
        "--webhook-port", type=int, default=8787, help="the webhook receiver's port (0: any free)"
    )
    _add_webhooks(commands)
    return parser


def _add_webhooks(commands: argparse._SubParsersAction) -> None:
    from orderspace_pipelines.webhooks.commands import DEFAULT_HOST, DEFAULT_PORT

    webhooks = commands.add_parser(
        "webhooks", help="the change feed: receive Orderspace webhooks, register the subscription, status"
    ).add_subparsers(dest="webhooks_command", required=True)
    serve = webhooks.add_parser("serve", help="run the webhook receiver (POST /webhooks/orderspace)")
    serve.add_argument("--host", default=DEFAULT_HOST)
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    register = webhooks.add_parser(
        "register",
        help="create or update the project's webhook for every event type and store its signing key "
        "(exit 0 done, 1 Orderspace refused or unreachable, 2 configuration)",
    )
    register.add_argument(
        "url", help="the receiver's public URL, e.g. https://example.com/webhooks/orderspace"
    )
    webhooks.add_parser(
        "status",
        help="subscription and last delivery (exit 0 well, 3 no/disabled subscription, 4 nothing arrived "
        "for ORDERSPACE_WEBHOOK_STALE_HOURS, 1 Orderspace unreachable)",
    )


def _run_webhooks(args: argparse.Namespace) -> int:
    from orderspace_pipelines.webhooks import commands

    if args.webhooks_command == "serve":
        return commands.serve_command(args.host, args.port)
    if args.webhooks_command == "register":
        return commands.register_command(args.url)
    return commands.status_command()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sandbox"]:  # the sandbox owns its flags (and its --help)
        sandbox = _dev_tool("sandbox", "orderspace_sandbox")
        return 2 if sandbox is None else sandbox.main(argv[1:])
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
            from orderspace_pipelines.commands import sync_command

            return sync_command(since=args.since, select=args.select)
        if args.command == "reconcile":
            from orderspace_pipelines.commands import reconcile_command

            return reconcile_command(sweep_days=args.sweep_days, full_cycle=args.full_cycle)
        if args.command == "push":
            from orderspace_pipelines.commands import push_command

            return push_command(args.file)
        if args.command in ("demo", "dev"):
            stack = _dev_tool(args.command, "orderspace_devtools.local_stack")
            if stack is None:
                return 2
            if args.command == "demo":
                return stack.demo_command(
                    scale=args.scale, rate_limit=args.rate_limit, rate_window=args.rate_window
                )
            options = stack.DevOptions(
                port=args.port, scale=args.scale, activity=args.activity, webhook_port=args.webhook_port
            )
            return stack.dev_command(options)
        if args.command == "webhooks":
            return _run_webhooks(args)
    except ConfigurationError as error:
        print(f"orderspace-pipelines: {error}", file=sys.stderr)
        return 2
    except DatabaseError as error:  # the shared database is down or refuses us: nothing was done
        print(f"orderspace-pipelines {args.command}: {error}; nothing was done", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    raise SystemExit(main())
