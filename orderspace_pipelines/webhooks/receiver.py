"""The webhook receiver: a Starlette app answering Orderspace's deliveries at `POST /webhooks/orderspace`.

Order of checks, each ending the request with nothing stored:

1. body larger than `max_body_bytes` -> 413 (read incrementally, never more than the cap);
2. no signing key yet (`webhooks register` not run) -> 503, so Orderspace retries later;
3. signature missing or wrong over the RAW body -> 401;
4. not UTF-8 JSON -> 400; not a list, empty, more than 50 events, an event without `event`/`data` or without
   its record's id -> 422 with a message naming the problem;
5. the delivery is committed to the event store (a replayed body is found there, not stored again), and only
   then 200 `{"delivery": id, "events": n, "duplicate": bool}`. A store failure answers 503.

Every delivery is logged with its count, types, outcome and delivery id; never the key, never a payload.
Two probes for deployments:
- `GET /healthz` (liveness: the process answers) is always 200 `{"status": "ok", "key": bool}`;
- `GET /readyz` (readiness: a delivery would be stored now) is 200 `{"status": "ready", "key": true, "store":
  "ok"}` when the signing key is there and the event store answers a query, else 503 with `"status": "not
  ready"` and what is missing. A load balancer or a compose health check sends deliveries only when ready;
  restarting the receiver would not bring back a database that is down, hence two probes.
"""

from __future__ import annotations

import logging
import time

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from orderspace_pipelines.webhooks import hooks
from orderspace_pipelines.webhooks.events import DeliveryRejected, ParsedEvent, describe_types, parse_delivery
from orderspace_pipelines.webhooks.signing import SIGNATURE_HEADER, KeyFileError, KeySource, verify
from orderspace_pipelines.webhooks.store import EventStore, StoredDelivery, StoreError

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/orderspace"
# A guess: the reference gives no size limit. 50 large orders (hundreds of lines each) can pass 1 MiB, and a
# 413 makes Orderspace retry and finally disable the webhook, so the cap is generous; it only bounds memory.
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class _TooLarge(Exception):
    pass


class _Refused(Exception):
    """A delivery ends with `status` and `message`; `level` is how it is logged (None: already logged)."""

    def __init__(self, status: int, message: str, level: int | None = logging.WARNING) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.level = level


def _answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _body_within(request: Request, limit: int, peer: str) -> bytes:
    """The raw body, at most `limit` bytes (413 above it; 400 when the client goes away first)."""
    try:
        return await _read_body(request, limit)
    except _TooLarge:
        raise _Refused(413, f"the body is larger than {limit} bytes") from None
    except ClientDisconnect:
        log.warning("delivery abandoned by %s before its body arrived", peer)
        raise _Refused(400, "the client disconnected", level=None) from None


def _signing_key(keys: KeySource) -> str:
    """The current signing key; 503 (Orderspace retries) while there is none or it cannot be read."""
    try:
        key = keys.current()
    except KeyFileError as error:
        log.error("cannot verify deliveries: %s", error)
        raise _Refused(503, "the receiver has no usable signing key", level=None) from None
    if key is None:
        log.error("delivery refused (503): no signing key at %s; run `webhooks register URL`", keys.path)
        raise _Refused(503, "the receiver has no signing key yet", level=None)
    return key


def _check_signature(key: str, body: bytes, signature: str | None) -> None:
    """401 unless `signature` is the raw body's signature under `key`."""
    if not signature:
        raise _Refused(401, f"the {SIGNATURE_HEADER} header is missing")
    if not verify(key, body, signature):
        raise _Refused(401, f"the {SIGNATURE_HEADER} header does not match the body")


def _has_key(keys: KeySource) -> bool:
    try:
        return keys.current() is not None
    except KeyFileError:
        return False


def _store_answers(store: EventStore) -> bool:
    """Whether the event store answers a query now (readiness); a failure is logged, redacted."""
    try:
        store.last_delivery_at()
    except StoreError as error:  # its message names the store, never the password
        log.warning("not ready: the event store did not answer: %s", error)
        return False
    except Exception as error:
        log.warning("not ready: the event store did not answer (%s)", type(error).__name__)
        return False
    return True


def _parsed(body: bytes) -> list[ParsedEvent]:
    """The delivery's events; 400 or 422 naming the problem."""
    try:
        return parse_delivery(body)
    except DeliveryRejected as error:
        raise _Refused(error.status, error.message) from None


def _commit(store: EventStore, body: bytes, events: list[ParsedEvent]) -> StoredDelivery:
    hooks.checkpoint("delivery.parsed")
    stored = store.add_delivery(body, events)
    hooks.checkpoint("delivery.committed")
    return stored


async def _store(store: EventStore, body: bytes, events: list[ParsedEvent]) -> StoredDelivery:
    """Commit the delivery (off the event loop); 503 when the store fails, so Orderspace retries."""
    try:
        return await run_in_threadpool(_commit, store, body, events)
    except StoreError as error:
        log.error("delivery of %d events not stored (503): %s", len(events), error)
        raise _Refused(503, "the delivery could not be stored; retry later", level=None) from None


def _log_stored(stored: StoredDelivery, events: list[ParsedEvent], started: float) -> None:
    unknown = sorted({event.event_type for event in events if not event.known})
    log.info(
        "delivery %d %s: %d events (%s)%s in %.1f ms",
        stored.delivery_id,
        "already stored (replay)" if stored.duplicate else "stored",
        stored.event_count,
        describe_types(events),
        f"; unknown event types stored, flagged: {', '.join(unknown)}" if unknown else "",
        (time.perf_counter() - started) * 1000,
    )


async def _deliver(request: Request, store: EventStore, keys: KeySource, max_body_bytes: int) -> JSONResponse:
    """One delivery through every check (see the module docstring), answered 200 once it is stored."""
    started = time.perf_counter()
    peer = request.client.host if request.client else "?"
    try:
        body = await _body_within(request, max_body_bytes, peer)
        _check_signature(_signing_key(keys), body, request.headers.get(SIGNATURE_HEADER))
        events = _parsed(body)
        stored = await _store(store, body, events)
    except _Refused as refused:
        if refused.level is not None:
            log.log(refused.level, "delivery rejected %s from %s: %s", refused.status, peer, refused.message)
        return _answer(refused.status, refused.message)
    _log_stored(stored, events, started)
    return JSONResponse(
        {"delivery": stored.delivery_id, "events": stored.event_count, "duplicate": stored.duplicate}
    )


def create_app(
    store: EventStore, keys: KeySource, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Starlette:
    """The receiver app writing into `store`, verifying with the key `keys` holds."""

    async def receive(request: Request) -> JSONResponse:
        return await _deliver(request, store, keys, max_body_bytes)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "key": _has_key(keys)})

    async def readyz(request: Request) -> JSONResponse:
        has_key, store_ok = _has_key(keys), await run_in_threadpool(_store_answers, store)
        ready = has_key and store_ok
        status = "ready" if ready else "not ready"
        body = {"status": status, "key": has_key, "store": "ok" if store_ok else "down"}
        return JSONResponse(body, status_code=200 if ready else 503)

    return Starlette(
        routes=[
            Route(WEBHOOK_PATH, receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )
