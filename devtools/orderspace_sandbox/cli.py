"""`orderspace-pipelines sandbox` and `python -m orderspace_sandbox`: run it until stopped."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from datetime import date
from pathlib import Path

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


def _positive(kind: type) -> object:
    def convert(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__} number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than zero, got {text!r}")
        return value

    return convert


def build_parser() -> argparse.ArgumentParser:
    defaults = SandboxConfig()
    parser = argparse.ArgumentParser(
        prog="orderspace-pipelines sandbox",
        description="Run the sandbox Orderspace API (OAuth token endpoint, /v1 API, /_sandbox/ controls) on "
        "this machine, with deterministic sample data, until Ctrl-C or SIGTERM.",
    )
    parser.add_argument("--host", default=defaults.host, help="address to listen on (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port; 0 picks a free one (default %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="data seed (default %(default)s)")
    parser.add_argument(
        "--scale", choices=SCALES, default=defaults.scale, help="data size (default %(default)s)"
    )
    parser.add_argument(
        "--rate-limit",
        type=_positive(int),
        default=defaults.rate_limit,
        help="requests per window (default %(default)s)",
    )
    parser.add_argument(
        "--rate-window",
        type=_positive(float),
        default=defaults.rate_window,
        help="window in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--token-ttl",
        type=_positive(float),
        default=defaults.token_ttl,
        help="token lifetime in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--client-id", default=defaults.client_id, help="accepted client id (default %(default)s)"
    )
    parser.add_argument("--client-secret", default=defaults.client_secret, help="accepted client secret")
    parser.add_argument(
        "--fault",
        action="append",
        type=_fault,
        default=[],
        metavar="KIND[:COUNT]",
        help="fault for the next COUNT API requests (repeatable): 500_html, 502_html, 503_empty, 500_json, "
        "slow, drop, 429, 401_empty, 400_html",
    )
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API request")
    parser.add_argument(
        "--end-date",
        type=_end_date,
        default=defaults.end_date,
        help="last day of the generated data, YYYY-MM-DD or 'today' (default %(default)s)",
    )
    parser.add_argument(
        "--ready-file", type=Path, help='write {"api_url","token_url","pid"} here once listening'
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument(
        "--activity",
        type=float,
        default=defaults.activity,
        metavar="N",
        help="make N random changes a minute (orders, invoices, payments, dispatches, edits, deletions), "
        "each sent to webhook subscriptions (default %(default)s: none)",
    )
    parser.add_argument(
        "--webhook-retry-base",
        type=float,
        default=defaults.webhook_retry_base,
        help="seconds; the k-th webhook retry waits k times this (default %(default)s)",
    )
    parser.add_argument(
        "--webhook-max-failures",
        type=int,
        default=defaults.webhook_max_failures,
        help="consecutive failed deliveries before a webhook is disabled (default %(default)s)",
    )
    parser.add_argument(
        "--webhook-allow-http",
        action="store_true",
        help="accept plain http:// webhook endpoints on 127.0.0.1 / localhost (the real API wants https)",
    )
    return parser


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
        config = SandboxConfig(
            host=args.host,
            port=args.port,
            seed=args.seed,
            scale=args.scale,
            rate_limit=args.rate_limit,
            rate_window=args.rate_window,
            token_ttl=args.token_ttl,
            client_id=args.client_id,
            client_secret=args.client_secret,
            end_date=args.end_date,
            faults=list(args.fault),
            latency=args.latency,
            verbose=args.verbose,
            activity=args.activity,
            webhook_retry_base=args.webhook_retry_base,
            webhook_max_failures=args.webhook_max_failures,
            webhook_allow_http=args.webhook_allow_http,
        )
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
