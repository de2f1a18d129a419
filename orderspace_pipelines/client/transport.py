"""An httpx transport that spends the shared request budget and retries what is safe to retry.

Retry policy (exponential backoff with full jitter between attempts, at most `max_retries` retries):

- 429: always retried, whatever the method (a 429 means the request was not processed). The wait is
  max(Retry-After, `min_429_wait`) and is shared: the throttle pauses every process on the machine.
- 5xx (500, 502, 503, 504), timeouts and dropped connections: retried for idempotent methods (GET, HEAD,
  OPTIONS, PUT, DELETE). A POST is never retried once it may have reached the server: the 5xx response is
  returned (the client raises `ServerError`) and a dropped connection or read timeout raises
  `TransportError(maybe_processed=True)`, so callers can reconcile (e.g. look the dispatch up) instead of
  creating it twice.
- connection failures (`ConnectError`, `ConnectTimeout`): retried for every method (nothing was sent).

Only API requests pass through the throttle; token requests use a separate instance without one (the identity
server is a separate service with no documented budget), with `retry_unsafe_methods=True` since a token POST
is harmless to repeat.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from orderspace_pipelines.client.errors import TransportError, display_url
from orderspace_pipelines.client.throttle import RequestThrottle

logger = logging.getLogger("orderspace_pipelines.client")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})
# Failures where the request certainly never reached the server.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures that may have happened after the server received the request.
MAYBE_SENT_ERRORS: tuple[type[Exception], ...] = (
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
MAX_RETRY_AFTER_SECONDS = 900.0


@dataclass
class RequestStats:
    """Counters for one client: API requests sent (retries included), retries, 429s and throttle waits."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    network_errors: int = 0
    throttle_acquires: int = 0
    throttle_wait_seconds: float = 0.0
    max_throttle_wait_seconds: float = 0.0
    retry_wait_seconds: float = 0.0
    token_requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **increments: float) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self, name, getattr(self, name) + value)

    def record_throttle_wait(self, seconds: float) -> None:
        with self._lock:
            self.throttle_acquires += 1
            self.throttle_wait_seconds += seconds
            self.max_throttle_wait_seconds = max(self.max_throttle_wait_seconds, seconds)

    @property
    def mean_throttle_wait_seconds(self) -> float:
        return self.throttle_wait_seconds / self.throttle_acquires if self.throttle_acquires else 0.0

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            values = {
                name: getattr(self, name) for name in self.__dataclass_fields__ if not name.startswith("_")
            }
        values["mean_throttle_wait_seconds"] = self.mean_throttle_wait_seconds
        return values


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class Retry:
    """Send the request again after `wait` seconds. `pause_all` (a 429): the wait is shared through the
    throttle, so every process sharing the budget waits it, not only this one."""

    wait: float
    reason: str
    pause_all: bool = False


@dataclass(frozen=True)
class GiveUp:
    """Stop retrying a failed send: raise `TransportError` with this detail."""

    detail: str
    maybe_processed: bool


def may_repeat(method: str, *, retry_unsafe_methods: bool = False) -> bool:
    """Whether a request may be sent twice: idempotent methods, or any when the caller says so."""
    return method.upper() in IDEMPOTENT_METHODS or retry_unsafe_methods


def classify_response(
    status: int,
    retry_after: str | None,
    *,
    attempt: int,
    max_retries: int,
    repeatable: bool,
    min_429_wait: float,
    backoff: float,
) -> Retry | None:
    """What to do with a response: `Retry`, or None to return it to the caller as it is.

    `attempt` counts the retries already made; `backoff` is the jittered wait for this attempt.
    """
    if attempt >= max_retries:
        return None
    if status == 429:  # never processed: retried whatever the method
        seconds = parse_retry_after(retry_after)
        wait = max(seconds or 0.0, min_429_wait)
        reason = f"429 Too Many Requests (Retry-After {seconds}); waiting {wait:.1f} s"
        return Retry(wait, reason, pause_all=True)
    if status in RETRY_STATUSES and repeatable:
        return Retry(backoff, f"HTTP {status}")
    return None


def classify_error(
    error: httpx.TransportError, *, attempt: int, max_retries: int, repeatable: bool, backoff: float
) -> Retry | GiveUp:
    """What to do when sending failed: `Retry`, or `GiveUp` (with whether the server may have acted on it)."""
    name = type(error).__name__
    reached_server = not isinstance(error, NOT_SENT_ERRORS)
    known = isinstance(error, NOT_SENT_ERRORS + MAYBE_SENT_ERRORS)
    if known and (repeatable or not reached_server) and attempt < max_retries:
        return Retry(backoff, name)
    if reached_server and not repeatable:
        detail = (
            f"{name} after the request was sent; it may have been processed, so it "
            "was not retried: check the result before sending it again"
        )
        return GiveUp(detail, maybe_processed=True)
    return GiveUp(f"{name} after {attempt + 1} attempt(s)", maybe_processed=False)


class ThrottledRetryTransport(httpx.BaseTransport):
    """Wraps a transport (default `httpx.HTTPTransport`) with the shared throttle and the retry policy."""

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        throttle: RequestThrottle | None = None,
        stats: RequestStats | None = None,
        max_retries: int = 5,
        min_429_wait: float = 60.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        retry_unsafe_methods: bool = False,
        close_inner: bool = True,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be zero or more, got {max_retries}")
        self.inner = inner if inner is not None else httpx.HTTPTransport()
        self.throttle = throttle
        self.stats = stats if stats is not None else RequestStats()
        self.max_retries = max_retries
        self.min_429_wait = min_429_wait
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_unsafe_methods = retry_unsafe_methods
        self.close_inner = close_inner

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.backoff_cap, self.backoff_base * (2**attempt)))

    def _sleep_before_retry(self, seconds: float, request: httpx.Request, reason: str, attempt: int) -> None:
        logger.info(
            "Retrying %s %s in %.2f s (retry %d of %d): %s",
            request.method,
            display_url(request.url),
            seconds,
            attempt + 1,
            self.max_retries,
            reason,
        )
        self.stats.add(retries=1, retry_wait_seconds=seconds)
        time.sleep(seconds)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send `request` through the throttle, retrying as `classify_response` / `classify_error` decide."""
        repeatable = may_repeat(request.method, retry_unsafe_methods=self.retry_unsafe_methods)
        attempt = 0
        while True:
            if self.throttle is not None:
                self.stats.record_throttle_wait(self.throttle.acquire())
            self.stats.add(requests=1)
            try:
                response = self.inner.handle_request(request)
            except httpx.TransportError as exc:
                self.stats.add(network_errors=1)
                decision = classify_error(
                    exc,
                    attempt=attempt,
                    max_retries=self.max_retries,
                    repeatable=repeatable,
                    backoff=self._backoff(attempt),
                )
                if isinstance(decision, GiveUp):
                    raise self._transport_error(request, decision, attempt + 1) from exc
            else:
                self._count_response(response.status_code)
                retry = classify_response(
                    response.status_code,
                    response.headers.get("retry-after"),
                    attempt=attempt,
                    max_retries=self.max_retries,
                    repeatable=repeatable,
                    min_429_wait=self.min_429_wait,
                    backoff=self._backoff(attempt),
                )
                if retry is None:
                    return response
                self._discard(response)
                decision = retry
            self._wait(decision, request, attempt)
            attempt += 1

    def _count_response(self, status: int) -> None:
        if status == 429:
            self.stats.add(rate_limited=1)
        elif status >= 500:
            self.stats.add(server_errors=1)

    def _wait(self, retry: Retry, request: httpx.Request, attempt: int) -> None:
        """Sleep before retry `attempt + 1`; a 429 wait is shared with every process via the throttle."""
        if retry.pause_all and self.throttle is not None:
            where = f"{request.method.upper()} {display_url(request.url)}"
            self.throttle.pause_all(retry.wait, reason=f"429 from {where}")
            self._sleep_before_retry(0.0, request, retry.reason, attempt)
        else:
            self._sleep_before_retry(retry.wait, request, retry.reason, attempt)

    @staticmethod
    def _transport_error(request: httpx.Request, give_up: GiveUp, attempts: int) -> TransportError:
        method = request.method.upper()
        return TransportError(
            f"{method} {display_url(request.url)} failed: {give_up.detail}",
            method=method,
            url=display_url(request.url),
            attempts=attempts,
            maybe_processed=give_up.maybe_processed,
        )

    @staticmethod
    def _discard(response: httpx.Response) -> None:
        try:
            response.read()
        except httpx.HTTPError:
            pass
        finally:
            response.close()

    def close(self) -> None:
        if self.close_inner:
            self.inner.close()
