"""`orderspace-pipelines webhooks serve|register|status`.

Exit codes:

- `serve`: 0 after a graceful stop (SIGTERM/SIGINT: in-flight deliveries finish first), 2 configuration.
- `register URL`: 0 the subscription is created or updated and its key stored; 1 Orderspace refused or could
  not be reached (its message is printed, never the key); 2 configuration (credentials, a bad URL).
- `status`: 0 subscribed and deliveries recent; 3 no subscription (never registered here, gone at
  Orderspace, or disabled); 4 subscribed but nothing arrived for `ORDERSPACE_WEBHOOK_STALE_HOURS`;
  1 Orderspace unreachable; 2 configuration.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from typing import TYPE_CHECKING, TextIO

import httpx

from orderspace_pipelines.webhooks.config import WebhookConfig, webhook_config
from orderspace_pipelines.webhooks.signing import KeyFileError, KeySource
from orderspace_pipelines.webhooks.store import EventStore, StoreError, open_store

if TYPE_CHECKING:
    import uvicorn

    from orderspace_pipelines.client import OrderspaceClient

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787


def build_server(
    config: WebhookConfig, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> tuple[uvicorn.Server, EventStore, KeySource]:
    """A uvicorn server running the receiver on the configured store and key file, with the store (close
    it after the server stops) and the key source. uvicorn is imported here: other commands need no ASGI."""
    import uvicorn

    from orderspace_pipelines.webhooks.receiver import create_app

    store = open_store(config.data_dir, config.database_url)
    keys = KeySource(config.key_file)
    app = create_app(store, keys)
    server_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the CLI's logging; uvicorn's loggers propagate to it
        access_log=False,  # the receiver logs every delivery itself
        lifespan="off",
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(server_config), store, keys


def serve_command(host: str, port: int, *, sock: socket.socket | None = None) -> int:
    """Run the receiver until SIGTERM/SIGINT."""
    config = webhook_config()
    try:
        server, store, keys = build_server(config, host, port)
    except StoreError as error:
        print(f"orderspace-pipelines webhooks serve: {error}", file=sys.stderr)
        return 2
    try:
        if keys.current() is None:
            log.warning(
                "no signing key at %s yet: deliveries get 503 (Orderspace retries) until "
                "`orderspace-pipelines webhooks register URL` stores one",
                config.key_file,
            )
    except KeyFileError as error:
        log.error("%s", error)
    log.info("webhook receiver: POST http://%s:%s/webhooks/orderspace, events into %s", host, port, store)
    stopped_by: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler it found:
        # this one notes it, so a requested stop ends with exit code 0 rather than death by signal.
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda number, _frame: stopped_by.append(number))
    try:
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        store.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if stopped_by:
        log.info("webhook receiver stopped (%s)", signal.Signals(stopped_by[0]).name)
    return 0


def _client() -> OrderspaceClient:
    from orderspace_pipelines.client import OrderspaceClient
    from orderspace_pipelines.settings import OrderspaceSettings

    return OrderspaceClient.from_settings(OrderspaceSettings.from_env())


def _check_url(url: str) -> str | None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        return f"expected the receiver's public URL (https://host/webhooks/orderspace), got {url!r}"
    return None


def register_command(url: str, out: TextIO | None = None) -> int:
    """Create or update the subscription; print what was done (never the key)."""
    out = out or sys.stdout
    from orderspace_pipelines.client.errors import OrderspaceError
    from orderspace_pipelines.webhooks.subscription import RegisterError, register

    problem = _check_url(url)
    if problem:
        print(f"orderspace-pipelines webhooks register: {problem}", file=sys.stderr)
        return 2
    config = webhook_config()
    try:
        with _client() as client:
            done = register(client, url, config.key_file)
    except (OrderspaceError, RegisterError, KeyFileError) as error:
        print(f"orderspace-pipelines webhooks register: {error}", file=sys.stderr)
        return 1
    print(f"webhook {done.webhook_id} {done.action}: {done.endpoint}, every event type", file=out)
    print(f"signing key stored in {done.key_file} (owner read/write only)", file=out)
    for note in done.notes:
        print(f"note: {note}", file=out)
    return 0


def status_command(out: TextIO | None = None) -> int:
    """Print the subscription's and the store's state; exit code as in the module docstring."""
    out = out or sys.stdout
    from orderspace_pipelines.client.errors import OrderspaceError
    from orderspace_pipelines.webhooks.subscription import STATUS_UNREACHABLE, current_status

    config = webhook_config()
    try:
        report = current_status(
            config.data_dir,
            config.key_file,
            stale_after=config.stale_after,
            open_api=_client,
            database_url=config.database_url,
        )
    except (StoreError, KeyFileError) as error:
        print(f"orderspace-pipelines webhooks status: {error}", file=sys.stderr)
        return 2
    except OrderspaceError as error:
        print(f"orderspace-pipelines webhooks status: cannot ask Orderspace: {error}", file=sys.stderr)
        return STATUS_UNREACHABLE
    for line in report.lines:
        print(line, file=out)
    return report.exit_code
