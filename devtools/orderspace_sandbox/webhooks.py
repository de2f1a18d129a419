"""The sandbox's change feed: signed webhook deliveries, from background threads, as the docs describe them.

Facts (apidocs `_webhook_events.html.md`): a POST whose JSON body is a list of up to 50 `{"event", "data"}`
objects, event types may be mixed; header `X-Orderspace-Signature` = base64(HMAC-SHA256(signing_key, raw
body));
only an HTTP 200 counts as delivered, anything else is retried "with an incremental backoff", and "after
multiple failed attempts your webhook will be disabled".

Choices where the docs are silent (guesses, all knobs in `SandboxConfig`):
- backoff is linear: after the k-th consecutive failed attempt the next waits `k * webhook_retry_base`
  seconds (default 30 s: 30, 60, 90, ...);
- after `webhook_max_failures` consecutive failed attempts (default 10, about 22 minutes of retrying with the
  default base) the subscription is disabled: its queue is dropped and nothing more is sent until the
  webhook is updated (PUT), which re-enables it;
- deliveries are in order per subscription: one thread per subscription sends one batch at a time and a
  failing batch holds back later ones until it succeeds or the subscription is disabled. A retry resends the
  identical bytes (same body, same signature), so a receiver can recognise a replay. In-order is the
  friendlier failure mode for a receiver (a newer state never overtakes an older one from the sandbox) and
  costs nothing here;
- a batch is whatever is queued when a send starts, at most 50 events: one bulk change (120 inventory
  levels) leaves as 50 + 50 + 20;
- only webhooks created or updated through the API in this run receive deliveries (the seeded two point at
  fictional hosts); a connection failure or timeout (`webhook_timeout`) counts as a failed attempt.
Status and the delivery log are read at `GET /_sandbox/webhooks`; the API's webhook shape is unchanged.
`GET /_sandbox/webhooks/changes` is the change log: each change with events a subscription wants, with the
wall-clock time it was made (`at`, Unix seconds) and its events as `[event type, record key]` pairs in
emission order (the key as the receiver files it: `invoice_id` for a payment, `sku` for an inventory level,
else `id`). Benchmarks use it to time a change from the sandbox into the lake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from orderspace_sandbox.store import LOOPBACK_HTTP, Store

MAX_EVENTS_PER_DELIVERY = 50  # documented
SIGNATURE_HEADER = "X-Orderspace-Signature"
LOG_LIMIT = 2000  # delivery log entries kept (oldest dropped first)
CHANGE_LOG_LIMIT = 20000  # change log entries kept (oldest dropped first)
_KEY_FIELD = {"payment": "invoice_id", "inventory_level": "sku"}
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DEFAULT = urllib.request.build_opener()


def sign(signing_key: str, body: bytes) -> str:
    """The documented signature: base64(HMAC-SHA256(signing_key, body))."""
    return base64.b64encode(hmac.new(signing_key.encode(), body, hashlib.sha256).digest()).decode()


@dataclass
class _Subscription:
    """Delivery state of one webhook."""

    webhook_id: str
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    batch: bytes | None = None  # the batch being sent (kept identical across retries)
    batch_types: list[str] = field(default_factory=list)
    enabled: bool = True
    consecutive_failures: int = 0
    attempts: int = 0
    delivered_batches: int = 0
    delivered_events: int = 0
    next_attempt_at: float = 0.0
    removed: bool = False
    thread: threading.Thread | None = None


class WebhookDispatcher:
    """Queues each change's events for every live, enabled subscription that lists them, and delivers them."""

    def __init__(self, store: Store, retry_base: float, max_failures: int, timeout: float) -> None:
        self.store = store
        self.retry_base = retry_base
        self.max_failures = max_failures
        self.timeout = timeout
        self._lock = threading.Condition()
        self._subs: dict[str, _Subscription] = {}
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self._changes: deque[dict[str, Any]] = deque(maxlen=CHANGE_LOG_LIMIT)
        self._stopping = False
        store.on_events = self.publish

    # --- producing -------------------------------------------------------------------------------

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Called by the store with its lock held: queue the events, never wait on the network."""
        hooks = [
            (w["id"], set(w.get("events") or []))
            for w in self.store._collections["webhooks"].records
            if w["id"] in self.store.live_webhooks
        ]
        with self._lock:
            if self._stopping:
                return
            self._log_change(events, set().union(*(wanted for _, wanted in hooks)))
            live = {webhook_id for webhook_id, _ in hooks}
            for webhook_id, sub in list(self._subs.items()):
                if webhook_id not in live:  # deleted: stop sending
                    sub.removed = True
                    sub.queue.clear()
                    del self._subs[webhook_id]
            for webhook_id, wanted in hooks:
                chosen = [event for event in events if event["event"] in wanted]
                if not chosen:
                    continue
                if webhook_id not in self._subs:
                    self._subs[webhook_id] = _Subscription(webhook_id)
                sub = self._subs[webhook_id]
                if not sub.enabled:
                    continue
                sub.queue.extend(chosen)
                if sub.thread is None:
                    sub.thread = threading.Thread(
                        target=self._run, args=(sub,), name=f"sandbox-webhook-{webhook_id}", daemon=True
                    )
                    sub.thread.start()
            self._lock.notify_all()

    def _log_change(self, events: list[dict[str, Any]], wanted: set[str]) -> None:
        """Note the change's time and those of its events some subscription wants (call with the lock)."""
        pairs = []
        for event in events:
            if event["event"] in wanted:
                resource = event["event"].split(".")[0]
                record = event["data"][resource]
                pairs.append([event["event"], str(record.get(_KEY_FIELD.get(resource, "id")))])
        if pairs:
            self._changes.append({"at": time.time(), "events": pairs})

    def changes(self) -> list[dict[str, Any]]:
        """The change log, oldest first: `{"at": unix seconds, "events": [[type, key], ...]}` per change."""
        with self._lock:
            return [dict(entry) for entry in self._changes]

    def webhook_changed(self, webhook_id: str) -> None:
        """A PUT on the webhook: re-enable it (a fresh start, nothing queued from before)."""
        with self._lock:
            sub = self._subs.get(webhook_id)
            if sub is not None and not sub.enabled:
                sub.enabled, sub.consecutive_failures, sub.next_attempt_at = True, 0, 0.0
                self._record(sub, "enabled", 0, None, "re-enabled by an update")

    # --- delivering ------------------------------------------------------------------------------

    def _run(self, sub: _Subscription) -> None:
        while True:
            with self._lock:
                while (
                    not self._stopping
                    and not sub.removed
                    and (
                        not sub.enabled
                        or (sub.batch is None and not sub.queue)
                        or time.monotonic() < sub.next_attempt_at
                    )
                ):
                    wait = sub.next_attempt_at - time.monotonic() if sub.batch is not None else None
                    self._lock.wait(timeout=None if wait is None else max(wait, 0.001))
                if self._stopping or sub.removed:
                    return
                if sub.batch is None:
                    taken = [sub.queue.popleft() for _ in range(min(MAX_EVENTS_PER_DELIVERY, len(sub.queue)))]
                    sub.batch = json.dumps(taken, separators=(",", ":")).encode()
                    sub.batch_types = [event["event"] for event in taken]
                body = sub.batch
                sub.attempts += 1
            target = self._target(sub.webhook_id)
            if target is None:  # deleted meanwhile
                with self._lock:
                    sub.removed = True
                return
            status, error = self._post(target[0], target[1], body)
            with self._lock:
                if status == 200:
                    sub.delivered_batches += 1
                    sub.delivered_events += len(sub.batch_types)
                    self._record(sub, "delivered", len(sub.batch_types), status, None)
                    sub.batch, sub.batch_types, sub.consecutive_failures = None, [], 0
                    continue
                sub.consecutive_failures += 1
                self._record(sub, "failed", len(sub.batch_types), status, error)
                if sub.consecutive_failures >= self.max_failures:
                    dropped = len(sub.batch_types) + len(sub.queue)
                    sub.enabled, sub.batch, sub.batch_types = False, None, []
                    sub.queue.clear()
                    self._record(
                        sub, "disabled", dropped, None,
                        f"{sub.consecutive_failures} consecutive failed attempts; {dropped} events dropped",
                    )  # fmt: skip
                else:
                    sub.next_attempt_at = time.monotonic() + self.retry_base * sub.consecutive_failures

    def _target(self, webhook_id: str) -> tuple[str, str] | None:
        with self.store.lock:
            webhook = self.store._collections["webhooks"].get(webhook_id)
            return None if webhook is None else (webhook["endpoint"], webhook["signing_key"])

    def _post(self, url: str, signing_key: str, body: bytes) -> tuple[int | None, str | None]:
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(signing_key, body),
                "User-Agent": "OrderspaceSandbox-Webhooks/1.0",
            },
        )
        # A receiver on this machine is reached directly, whatever proxy the environment names.
        opener = _DIRECT if LOOPBACK_HTTP.match(url) else _DEFAULT
        try:
            with opener.open(request, timeout=self.timeout) as response:
                response.read()
                return response.status, None
        except urllib.error.HTTPError as error:
            return error.code, None
        except (OSError, ValueError) as error:  # refused, reset, timeout, bad URL
            return None, f"{type(error).__name__}: {error}"

    def _record(
        self, sub: _Subscription, outcome: str, events: int, status: int | None, error: str | None
    ) -> None:
        self._log.append(
            {
                "webhook_id": sub.webhook_id,
                "at": round(time.time(), 3),
                "outcome": outcome,  # delivered | failed | disabled | enabled
                "attempt": sub.consecutive_failures if outcome == "failed" else None,
                "events": events,
                "event_types": sorted(set(sub.batch_types)),
                "status": status,
                "error": error,
            }
        )

    # --- reading and lifecycle -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every subscription's state and the delivery log, oldest entry first."""
        with self.store.lock:
            hooks = [(w["id"], w["id"] in self.store.live_webhooks) for w in self.store.all("webhooks")]
        with self._lock:
            states = []
            for webhook_id, live in hooks:
                sub = self._subs.get(webhook_id)
                states.append(
                    {
                        "id": webhook_id,
                        "live": live,
                        "enabled": live and (sub is None or sub.enabled),
                        "queued": 0 if sub is None else len(sub.queue) + len(sub.batch_types),
                        "consecutive_failures": 0 if sub is None else sub.consecutive_failures,
                        "attempts": 0 if sub is None else sub.attempts,
                        "delivered_batches": 0 if sub is None else sub.delivered_batches,
                        "delivered_events": 0 if sub is None else sub.delivered_events,
                    }
                )
            return {"webhooks": states, "deliveries": list(self._log)}

    def stop(self) -> None:
        """Stop every delivery thread (a send in progress finishes or times out first)."""
        with self._lock:
            self._stopping = True
            threads = [sub.thread for sub in self._subs.values() if sub.thread is not None]
            self._lock.notify_all()
        for thread in threads:
            thread.join(timeout=self.timeout + 1)
