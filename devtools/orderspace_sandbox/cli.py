"""`orderspace-pipelines sandbox` and `python -m orderspace_sandbox`: run it until stopped."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

from orderspace_sandbox.config import SCALES, SandboxConfig, parse_fault_spec
from orderspace_sandbox.server import SandboxServer


def _fault(text: str) -> str:
    try:
        parse_fault_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _end_date(text: str) -> date:
    if text == "today":
        return date.today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD or 'today', got {text!r}") from None


def _positive(kind: type[int] | type[float]) -> Callable[[str], float | int]:
    def convert(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than zero, got {text!r}")
        return value

    return convert


class _Flag(NamedTuple):
    """One command-line flag: the `SandboxConfig` field it sets (None: not part of the config) and its
    argparse options. A config flag without a `default` option takes the config's default."""

    name: str
    field: str | None
    options: dict[str, Any]


def _flag(name: str, field: str | None, description: str, **options: Any) -> _Flag:
    return _Flag(name, field, {"help": description, **options})


_FLAGS = (
    _flag("--host", "host", "address to listen on (default %(default)s)"),
    _flag("--port", "port", "port; 0 picks a free one (default %(default)s)", type=int, default=8765),
    _flag("--seed", "seed", "data seed (default %(default)s)", type=int),
    _flag("--scale", "scale", "data size (default %(default)s)", choices=SCALES),
    _flag("--rate-limit", "rate_limit", "requests per window (default %(default)s)", type=_positive(int)),
    _flag("--rate-window", "rate_window", "window in seconds (default %(default)s)", type=_positive(float)),
    _flag(
        "--token-ttl", "token_ttl", "token lifetime in seconds (default %(default)s)", type=_positive(float)
    ),
    _flag("--client-id", "client_id", "accepted client id (default %(default)s)"),
    _flag("--client-secret", "client_secret", "accepted client secret"),
    _flag(
        "--fault",
        "faults",
        "fault for the next COUNT API requests (repeatable): 500_html, 502_html, 503_empty, 500_json, "
        "slow, drop, 429, 401_empty, 400_html",
        action="append",
        type=_fault,
        default=[],
        metavar="KIND[:COUNT]",
    ),
    _flag("--latency", "latency", "seconds added to every API request", type=float),
    _flag(
        "--end-date",
        "end_date",
        "last day of the generated data, YYYY-MM-DD or 'today' (default %(default)s)",
        type=_end_date,
    ),
    _flag("--ready-file", None, 'write {"api_url","token_url","pid"} here once listening', type=Path),
    _flag("--verbose", "verbose", "log every request to stderr", action="store_true"),
    _flag(
        "--activity",
        "activity",
        "make N random changes a minute (orders, invoices, payments, dispatches, edits, deletions), "
        "each sent to webhook subscriptions (default %(default)s: none)",
        type=float,
        metavar="N",
    ),
    _flag(
        "--webhook-retry-base",
        "webhook_retry_base",
        "seconds; the k-th webhook retry waits k times this (default %(default)s)",
        type=float,
    ),
    _flag(
        "--webhook-max-failures",
        "webhook_max_failures",
        "consecutive failed deliveries before a webhook is disabled (default %(default)s)",
        type=int,
    ),
    _flag(
        "--webhook-allow-http",
        "webhook_allow_http",
        "accept plain http:// webhook endpoints on 127.0.0.1 / localhost (the real API wants https)",
        action="store_true",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(
        prog="orderspace-pipelines sandbox",
        description="Run the sandbox Orderspace API (OAuth token endpoint, /v1 API, /_sandbox/ controls) on "
        "this machine, with deterministic sample data, until Ctrl-C or SIGTERM.",
    )
    for flag in _FLAGS:
        options = dict(flag.options)
        if flag.field is not None:
            options["dest"] = flag.field
            options.setdefault("default", getattr(defaults, flag.field))
        parser.add_argument(flag.name, **options)
    return parser


def _config(args: argparse.Namespace) -> SandboxConfig:
    """The config the parsed flags describe (ValueError naming a bad value)."""
    return SandboxConfig(
        **{flag.field: getattr(args, flag.field) for flag in _FLAGS if flag.field is not None}
    )


def _write_ready_file(path: Path, server: SandboxServer) -> None:
    """Written to a temporary name then renamed, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(
        json.dumps({"api_url": server.api_url, "token_url": server.token_url, "pid": os.getpid()}) + "\n"
    )
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Parse flags, start the sandbox, print one ready line, serve until SIGINT/SIGTERM; the exit code."""
    args = build_parser().parse_args(argv)
    try:
        config = _config(args)
    except ValueError as error:
        print(f"orderspace-pipelines sandbox: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    # Installed before the data is built, so a Ctrl-C during a large build still ends cleanly.
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    started = time.perf_counter()
    server = SandboxServer(config)
    try:
        try:
            server.start()
        except OSError as error:
            print(
                f"orderspace-pipelines sandbox: cannot listen on {config.host}:{config.port}: {error}",
                file=sys.stderr,
            )
            return 1
        print(
            f"Orderspace sandbox on {server.base_url}  api={server.api_url}  token={server.token_url}  "
            f"scale={config.scale} seed={config.seed} end_date={config.end_date} "
            f"rate={config.rate_limit}/{config.rate_window:g}s token_ttl={config.token_ttl:g}s "
            f"client_id={config.client_id} orders={server.store.count('orders')} "
            f"activity={config.activity:g}/min "
            f"started_in={time.perf_counter() - started:.2f}s",
            flush=True,
        )
        if args.ready_file:
            _write_ready_file(args.ready_file, server)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.ready_file:
            args.ready_file.unlink(missing_ok=True)
    print("Orderspace sandbox stopped", flush=True)
    return 0
