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
        method = request.method.upper()
        may_repeat = method in IDEMPOTENT_METHODS or self.retry_unsafe_methods
        where = f"{method} {display_url(request.url)}"
        attempt = 0
        while True:
            if self.throttle is not None:
                self.stats.record_throttle_wait(self.throttle.acquire())
            self.stats.add(requests=1)
            try:
                response = self.inner.handle_request(request)
            except httpx.TransportError as exc:
                self.stats.add(network_errors=1)
                reached_server = not isinstance(exc, NOT_SENT_ERRORS)
                retryable = isinstance(exc, NOT_SENT_ERRORS + MAYBE_SENT_ERRORS) and (
                    may_repeat or not reached_server
                )
                if retryable and attempt < self.max_retries:
                    self._sleep_before_retry(self._backoff(attempt), request, type(exc).__name__, attempt)
                    attempt += 1
                    continue
                unsafe = reached_server and not may_repeat
                if unsafe:
                    detail = (
                        f"{type(exc).__name__} after the request was sent; it may have been processed, so it "
                        "was not retried: check the result before sending it again"
                    )
                else:
                    detail = f"{type(exc).__name__} after {attempt + 1} attempt(s)"
                raise TransportError(
                    f"{where} failed: {detail}",
                    method=method,
                    url=display_url(request.url),
                    attempts=attempt + 1,
                    maybe_processed=unsafe,
                ) from exc

            status = response.status_code
            if status == 429:
                self.stats.add(rate_limited=1)
                if attempt >= self.max_retries:
                    return response
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                wait = max(retry_after or 0.0, self.min_429_wait)
                self._discard(response)
                reason = f"429 Too Many Requests (Retry-After {retry_after}); waiting {wait:.1f} s"
                if self.throttle is not None:
                    self.throttle.pause_all(wait, reason=f"429 from {where}")
                    self._sleep_before_retry(0.0, request, reason, attempt)
                else:
                    self._sleep_before_retry(wait, request, reason, attempt)
                attempt += 1
                continue
            if status >= 500:
                self.stats.add(server_errors=1)
                if status in RETRY_STATUSES and may_repeat and attempt < self.max_retries:
                    self._discard(response)
                    self._sleep_before_retry(self._backoff(attempt), request, f"HTTP {status}", attempt)
                    attempt += 1
                    continue
            return response

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
