"""The sandbox's HTTP server: the Orderspace API, its OAuth token endpoint and the `/_sandbox/` controls.

Built on the standard library's `http.server.ThreadingHTTPServer` on purpose:
- full control over the raw response: HTML and empty error bodies, missing headers, and `drop` faults that
  close the socket without sending a byte, which a framework would "helpfully" turn into a proper response;
- it starts in milliseconds in a background thread of the test process (no ASGI server, no event loop);
- no dependency beyond Python itself, and it shares nothing with the project's client.

Request pipeline for `/v1/...`: count it (stats + rate window, the 429'd attempts included, as the real API
counts attempts) -> optional latency -> 429 if over the window's limit -> injected fault, if one matches ->
route exists (else an HTML 404) -> Bearer token check (401) -> handler. Every response carries `X-Request-Id`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import re
import socket
import socketserver
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from orderspace_sandbox.activity import Activity
from orderspace_sandbox.config import SandboxConfig, parse_fault_spec
from orderspace_sandbox.controls import (
    DEFAULT_SLOW_DELAY,
    DriftRegistry,
    Fault,
    FaultInjector,
    RateLimiter,
    ServerStats,
    TokenRegistry,
    apply_drift,
)
from orderspace_sandbox.store import SANDBOX_RESOURCES, SANDBOX_SINGULAR, WITHOUT_HAS_MORE, ApiError, Store
from orderspace_sandbox.webhooks import WebhookDispatcher

API_PREFIX = "/v1"
TOKEN_PATH = "/oauth/token"
CONTROL_PREFIX = "/_sandbox/"

# Which methods each resource answers on the collection path and on the item path.
COLLECTION_METHODS: dict[str, set[str]] = {name: {"GET"} for name in SANDBOX_RESOURCES}
for _name in ("customers", "orders", "dispatches", "products", "inventory_levels", "webhooks"):
    COLLECTION_METHODS[_name].add("POST")
ITEM_METHODS: dict[str, set[str]] = {
    "customers": {"GET", "PUT", "DELETE"},
    "orders": {"GET", "DELETE"},
    "dispatches": {"GET"},
    "products": {"GET", "PUT", "DELETE"},
    "invoices": {"GET", "DELETE"},
    "categories": {"GET", "DELETE"},
    "price_lists": {"GET", "DELETE"},
    "webhooks": {"GET", "PUT", "DELETE"},
}
API_PATH = re.compile(r"^/v1/(?P<resource>[a-z_]+)(?:/(?P<item>[^/]+))?/?$")

HTML_PAGES = {
    500: "<!DOCTYPE html><html><head><title>We're sorry, but something went wrong (500)</title></head>"
    "<body><div class='dialog'><h1>We're sorry, but something went wrong.</h1></div></body></html>",
    502: "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
    400: "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1>"
    "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n",
}
# An unknown path (or a method the path does not answer) gets an HTML page, as the real API's web framework
# sends (recorded in orderspace-ruby's not_found.http); the wording here is the sandbox's own.
NOT_FOUND_PAGE = (
    "<!DOCTYPE html>\n<html>\n<head><title>404 Page Not Found</title></head>\n<body>\n<div>\n"
    "<h1>Page Not Found</h1>\n<p>There is nothing at this address.</p>\n</div>\n</body>\n</html>\n"
)
# The recorded 401s: an empty text/html body, the reason in WWW-Authenticate's error_description.
UNAUTHORIZED_HEADER = 'Bearer realm="Orderspace", error="invalid_token", error_description="{reason}"'


def _no_route() -> _Response:
    return _Response(404, NOT_FOUND_PAGE.encode(), "text/html; charset=utf-8")


def _unauthorized(reason: str) -> _Response:
    headers = {
        "WWW-Authenticate": UNAUTHORIZED_HEADER.format(reason=reason),
        "Cache-Control": "private, no-store",
        "Pragma": "no-cache",
    }
    return _Response(401, b"", "text/html", headers)


class _Response:
    """What to send back: status, body bytes and headers (or nothing at all for a dropped connection)."""

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        drop: bool = False,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}
        self.drop = drop


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return _Response(status, body, "application/json; charset=utf-8", headers)


def _message(status: int, message: str, headers: dict[str, str] | None = None) -> _Response:
    return _json(status, {"message": message}, headers)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-answer (timeouts against `slow`, stopped servers) is normal here.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can take seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients with connection pools expect
    server_version = "OrderspaceSandbox/1.0"
    timeout = 60  # idle keep-alive connections are closed after this many seconds
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    server: _HTTPServer

    # --- plumbing --------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.connections_lock:
                self.server.open_connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.sandbox.config.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        request_id = f"req_{uuid.uuid4().hex[:20]}"
        try:
            raw_body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(
                self.server.sandbox._bad_request(
                    "Could not read the request body (bad Content-Length or chunking)"
                ),
                request_id,
            )
            return
        url = urlsplit(self.path)
        path = unquote(url.path)
        try:
            response = self.server.sandbox.respond(method, path, url.query, raw_body, self.headers)
        except Exception as error:  # a bug in the sandbox: say so, never hang the client
            traceback.print_exc(file=sys.stderr)
            response = _message(500, f"sandbox internal error: {type(error).__name__}")
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response, request_id)

    def _send(self, response: _Response, request_id: str) -> None:
        try:
            self.send_response(response.status)
            self.send_header("X-Request-Id", request_id)
            if response.content_type:
                self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if response.body and self.command != "HEAD":
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class SandboxServer:
    """The sandbox Orderspace API for one account. `start()` serves it from a daemon thread."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self.config = config or SandboxConfig()
        self.store = Store(
            self.config.seed, self.config.scale, self.config.end_date, self.config.max_page_size
        )
        self.tokens = TokenRegistry(self.config.token_ttl)
        self.rate = RateLimiter(self.config.rate_limit, self.config.rate_window)
        self.faults = FaultInjector()
        self.drift = DriftRegistry(SANDBOX_RESOURCES)
        self._stats = ServerStats()
        for spec in self.config.faults:
            kind, count = parse_fault_spec(spec)
            self.faults.inject(kind, count)
        self.store.allow_http_loopback = self.config.webhook_allow_http
        self.webhooks = WebhookDispatcher(
            self.store,
            self.config.webhook_retry_base,
            self.config.webhook_max_failures,
            self.config.webhook_timeout,
        )
        self.activity = Activity(self.store, self.config.seed)
        self._http: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> SandboxServer:
        """Bind and serve in a daemon thread; returns self. Raises OSError if the port is taken."""
        if self._http is None:
            self._http = _HTTPServer((self.config.host, self.config.port), self)
            self._thread = threading.Thread(
                target=self._http.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="orderspace-sandbox",
                daemon=True,
            )
            self._thread.start()
            self.activity.start(self.config.activity)
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        http, self._http = self._http, None
        if http is None:
            return
        self.activity.stop()
        self.webhooks.stop()
        http.shutdown()
        with http.connections_lock:
            for connection in list(http.open_connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._http is None:
            raise RuntimeError("the sandbox is not started; call start() first")
        return self._http.server_port

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + API_PREFIX

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    # --- controls --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Request counters: requests, rate_limited, tokens_issued, by_path, max_in_window, ..."""
        snapshot = self._stats.snapshot()
        snapshot["max_in_window"] = self.rate.max_in_window
        snapshot["rate_limit"] = self.config.rate_limit
        snapshot["rate_window"] = self.config.rate_window
        return snapshot

    def reset_stats(self) -> None:
        self._stats.reset()
        self.rate.reset_max()

    def revoke_tokens(self) -> None:
        self.tokens.revoke_all()

    # --- request handling ------------------------------------------------------------------------

    def respond(self, method: str, path: str, query: str, raw_body: bytes, headers: Any) -> _Response:
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path[len(CONTROL_PREFIX) :].strip("/"), raw_body)
        if path == TOKEN_PATH or path == TOKEN_PATH + "/":
            fault = self.faults.take(path)
            if fault is not None and fault.path_prefix is not None:
                faulted = self._fault_response(fault)
                if faulted is not None:
                    return faulted
            return self._token(method, raw_body, headers)
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            return self._api(method, path, query, raw_body, headers)
        return _no_route()

    def _api(self, method: str, path: str, query: str, raw_body: bytes, headers: Any) -> _Response:
        match = API_PATH.match(path)
        resource = match["resource"] if match else None
        if match and resource in SANDBOX_SINGULAR:
            route_key = f"{method} /v1/{resource}" + ("/{id}" if match["item"] else "")
        else:
            route_key = f"{method} {path}"
        self._stats.count_request(route_key)
        if self.config.latency:
            time.sleep(self.config.latency)
        if not self.rate.attempt():
            return self._count(self._too_many())
        fault = self.faults.take(path)
        if fault is not None:
            faulted = self._fault_response(fault)
            if faulted is not None:
                return self._count(faulted)
        if not self._routed(method, match):  # routing comes before authentication, as in a web framework
            return self._count(_no_route())
        authorization = headers.get("Authorization") or ""
        scheme, _, token = authorization.partition(" ")
        reason = self.tokens.check(token.strip() if scheme.lower() == "bearer" else None)
        if reason is not None:
            return self._count(_unauthorized(reason))
        try:
            return self._count(self._route(method, path, match, query, raw_body))
        except ApiError as error:
            if error.status == 400:
                return self._count(self._bad_request(error.message))
            return self._count(_message(error.status, error.message))

    def _bad_request(self, reason: str) -> _Response:
        """A 400 as the real API sends it: `text/html`, empty body. The reason goes to stderr when verbose."""
        if self.config.verbose:
            print(f"sandbox: 400 Bad Request: {reason}", file=sys.stderr)
        return _Response(400, b"", "text/html; charset=utf-8")

    def _count(self, response: _Response) -> _Response:
        self._stats.count_status(response.status)
        return response

    def _too_many(self) -> _Response:
        retry = self.rate.retry_after
        return _message(
            429,
            f"Too many requests: the limit is {self.config.rate_limit} requests "
            f"per {self.config.rate_window:g} "
            f"seconds. Wait {retry} seconds before sending more.",
            {"Retry-After": str(retry)},
        )

    def _fault_response(self, fault: Fault) -> _Response | None:
        """The injected misbehaviour, or None for `slow` (which only sleeps, then the request goes on)."""
        self._stats.count_fault()
        kind = fault.kind
        if kind == "slow":
            time.sleep(DEFAULT_SLOW_DELAY if fault.delay is None else fault.delay)
            return None
        if kind == "drop":
            return _Response(0, drop=True)
        if kind == "429":
            return self._too_many()
        if kind == "500_json":
            return _message(500, "Internal Server Error")
        if kind == "503_empty":
            return _Response(503)
        if kind == "401_empty":
            return _Response(401)
        status = int(kind.split("_")[0])
        return _Response(status, HTML_PAGES[status].encode(), "text/html; charset=utf-8")

    @staticmethod
    def _routed(method: str, match: re.Match[str] | None) -> bool:
        """Whether (method, path) is an API route. Routed by method and path, as a web framework does: an
        unknown method on a known path is a 404 page too, not a 405."""
        if match is None or match["resource"] not in SANDBOX_SINGULAR:
            return False
        allowed = (
            ITEM_METHODS.get(match["resource"], set())
            if match["item"]
            else COLLECTION_METHODS[match["resource"]]
        )
        return method in allowed

    def _route(
        self, method: str, path: str, match: re.Match[str] | None, query: str, raw_body: bytes
    ) -> _Response:
        if match is None or not self._routed(method, match):
            return _no_route()
        resource, item = match["resource"], match["item"]
        body: Any = None
        if method in ("POST", "PUT"):
            try:
                body = json.loads(raw_body) if raw_body.strip() else None
            except (ValueError, UnicodeDecodeError) as error:
                raise ApiError(400, f"The request body is not valid JSON: {error}") from None
        store = self.store
        if method == "GET":
            params = parse_qs(query, keep_blank_values=True)
            return self._render_get(resource, item, params)
        if method == "DELETE":
            return _json(200, {SANDBOX_SINGULAR[resource]: store.delete(resource, item)})
        if resource == "inventory_levels":
            return _json(200, {"inventory_levels": store.update_inventory(body)})
        actions = {
            ("POST", "customers"): store.create_customer,
            ("POST", "orders"): store.create_order,
            ("POST", "dispatches"): store.create_dispatch,
            ("POST", "products"): store.create_product,
            ("POST", "webhooks"): store.create_webhook,
        }
        if method == "POST":
            record = actions[(method, resource)](body)
        else:
            updates = {
                "customers": store.update_customer,
                "products": store.update_product,
                "webhooks": store.update_webhook,
            }
            record = updates[resource](item, body)
            if resource == "webhooks":
                self.webhooks.webhook_changed(item)
        return _json(200, {SANDBOX_SINGULAR[resource]: record})

    def _render_get(self, resource: str, item: str | None, params: dict[str, list[str]]) -> _Response:
        drift = self.drift.get(resource)
        with self.store.lock:  # serialise while holding the lock: records are live objects
            if item:
                record = self.store.find(resource, item)
                return _json(200, {SANDBOX_SINGULAR[resource]: apply_drift(record, drift)})
            records, has_more = self.store.page(
                resource, {name: values[-1] for name, values in params.items()}
            )
            payload: dict[str, Any] = {resource: [apply_drift(r, drift) for r in records]}
            if (
                has_more is not None
                and resource not in WITHOUT_HAS_MORE
                and not (drift and drift.omit_has_more)
            ):
                payload["has_more"] = has_more
            return _json(200, payload)

    # --- the token endpoint ----------------------------------------------------------------------

    def _token(self, method: str, raw_body: bytes, headers: Any) -> _Response:
        if method != "POST":
            return _json(
                405, {"error": "invalid_request", "error_description": "Use POST"}, {"Allow": "POST"}
            )
        content_type = (headers.get("Content-Type") or "").lower()
        text = raw_body.decode("utf-8", errors="replace")
        form: dict[str, str] = {}
        if "json" in content_type:
            try:
                loaded = json.loads(text) if text.strip() else {}
            except ValueError:
                loaded = None
            if not isinstance(loaded, dict):
                self._stats.count_token(issued=False)
                return _json(400, {"error": "invalid_request", "error_description": "Malformed JSON body"})
            form = {k: str(v) for k, v in loaded.items()}
        else:
            form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                basic_id, _, basic_secret = base64.b64decode(encoded.strip()).decode().partition(":")
                client_id, client_secret = unquote(basic_id), unquote(basic_secret)
            except (binascii.Error, UnicodeDecodeError):
                pass
        if form.get("grant_type") != "client_credentials":
            self._stats.count_token(issued=False)
            return _json(
                400,
                {
                    "error": "unsupported_grant_type",
                    "error_description": "grant_type must be client_credentials",
                },
            )
        expected_id, expected_secret = self.config.client_id, self.config.client_secret
        if not (
            client_id is not None
            and client_secret is not None
            and hmac.compare_digest(client_id.encode(), expected_id.encode())
            and hmac.compare_digest(client_secret.encode(), expected_secret.encode())
        ):
            self._stats.count_token(issued=False)
            return _json(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "Client authentication failed due to unknown client, "
                    "no client authentication included, or unsupported authentication method.",
                },
            )
        token = self.tokens.issue()
        self._stats.count_token(issued=True)
        ttl = self.config.token_ttl
        return _json(
            200,
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": int(ttl) if float(ttl).is_integer() else ttl,
                "scope": "read write",
            },
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    # --- /_sandbox/ controls ---------------------------------------------------------------------

    def _control(self, method: str, action: str, raw_body: bytes) -> _Response:
        try:
            body = json.loads(raw_body) if raw_body.strip() else {}
        except (ValueError, UnicodeDecodeError) as error:
            return _message(400, f"The request body is not valid JSON: {error}")
        if not isinstance(body, dict):
            return _message(400, "The request body must be a JSON object")
        try:
            if method == "GET" and action == "stats":
                return _json(
                    200,
                    self.stats() | {"pending_faults": self.faults.pending(), "drift": self.drift.snapshot()},
                )
            if method == "GET" and action.startswith("records/"):
                resource = action.split("/", 1)[1]
                if resource not in SANDBOX_RESOURCES:
                    return _message(
                        404, f"unknown resource {resource!r}; known: {', '.join(SANDBOX_RESOURCES)}"
                    )
                return _json(200, {resource: self.store.all(resource)})
            if method == "POST" and action == "reset-stats":
                self.reset_stats()
                return _json(200, {"ok": True})
            if method == "POST" and action == "faults":
                self.faults.inject(
                    body.get("kind", ""), body.get("count", 1), body.get("path_prefix"), body.get("delay")
                )
                return _json(200, {"ok": True, "pending_faults": self.faults.pending()})
            if method == "POST" and action == "faults/clear":
                self.faults.clear()
                return _json(200, {"ok": True})
            if method == "POST" and action == "drift":
                self.drift.set(
                    body.get("resource", ""),
                    extra_fields=body.get("extra_fields"),
                    missing_fields=body.get("missing_fields"),
                    omit_has_more=body.get("omit_has_more"),
                )
                return _json(200, {"ok": True, "drift": self.drift.snapshot()})
            if method == "POST" and action == "drift/clear":
                self.drift.clear(body.get("resource"))
                return _json(200, {"ok": True})
            if method == "GET" and action == "webhooks":
                return _json(200, self.webhooks.snapshot())
            if method == "GET" and action == "webhooks/changes":
                return _json(200, {"changes": self.webhooks.changes()})
            if method == "POST" and action == "activity":
                count = body.get("changes", 1)
                if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10000:
                    return _message(400, f"changes must be a whole number from 1 to 10000, got {count!r}")
                return _json(200, {"changes": self.activity.run(count)})
            if method == "POST" and action == "revoke-tokens":
                self.revoke_tokens()
                return _json(200, {"ok": True})
        except ValueError as error:
            return _message(400, str(error))
        return _message(404, f"No sandbox control {method} {CONTROL_PREFIX}{action}")
