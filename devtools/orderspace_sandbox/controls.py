"""The sandbox's moving parts besides the data: tokens, the rate window, request statistics, faults and drift.

Each class holds its own lock, so the HTTP handler threads can use them concurrently.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from orderspace_sandbox.config import FAULT_KINDS

DEFAULT_SLOW_DELAY = 1.0  # seconds a `slow` fault sleeps when no delay is given


class TokenRegistry:
    """Access tokens issued by the token endpoint, each valid for `ttl` seconds (monotonic clock)."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            # Forget long-expired tokens so a long-running sandbox does not grow without bound.
            for old in [t for t, expiry in self._expiry.items() if expiry < now - self.ttl]:
                del self._expiry[old]
            self._expiry[token] = now + self.ttl
        return token

    def check(self, token: str | None) -> str | None:
        """None when the token is valid, else the reason it is not (the 401's error_description): the two
        recorded ones. A missing token reads as an invalid one (a guess: the recordings show no other)."""
        if not token:
            return "The access token is invalid"
        with self._lock:
            expiry = self._expiry.get(token)
        if expiry is None:
            return "The access token is invalid"
        if time.monotonic() >= expiry:
            return "The access token expired"
        return None

    def revoke_all(self) -> None:
        with self._lock:
            self._expiry.clear()


class RateLimiter:
    """A sliding window of `window` seconds for the one sandbox account.

    Every API request that reaches the limiter is recorded, including the ones answered 429: the real API
    counts attempts, so a client that keeps knocking while throttled stays throttled. `max_in_window` is the
    most attempts seen in any window, which lets tests prove a client never went over its budget.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.max_in_window = 0

    @property
    def retry_after(self) -> int:
        return math.ceil(self.window)

    def attempt(self) -> bool:
        """Record one request; True if it is within the limit (the requests before it number < limit)."""
        now = time.monotonic()
        with self._lock:
            while self._times and self._times[0] <= now - self.window:
                self._times.popleft()
            allowed = len(self._times) < self.limit
            self._times.append(now)
            self.max_in_window = max(self.max_in_window, len(self._times))
            return allowed

    def reset_max(self) -> None:
        with self._lock:
            self.max_in_window = 0


class ServerStats:
    """Counters reported by `GET /_sandbox/stats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.rate_limited = 0
            self.tokens_issued = 0
            self.token_requests = 0
            self.faults_served = 0
            self.by_path: Counter[str] = Counter()
            self.by_status: Counter[str] = Counter()

    def count_request(self, route_key: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_path[route_key] += 1

    def count_status(self, status: int) -> None:
        with self._lock:
            self.by_status[str(status)] += 1
            if status == 429:
                self.rate_limited += 1

    def count_token(self, issued: bool) -> None:
        with self._lock:
            self.token_requests += 1
            if issued:
                self.tokens_issued += 1

    def count_fault(self) -> None:
        with self._lock:
            self.faults_served += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "rate_limited": self.rate_limited,
                "tokens_issued": self.tokens_issued,
                "token_requests": self.token_requests,
                "faults_served": self.faults_served,
                "by_path": dict(sorted(self.by_path.items())),
                "by_status": dict(sorted(self.by_status.items())),
            }


@dataclass
class Fault:
    """One injected misbehaviour, served to the next `remaining` matching requests."""

    kind: str
    remaining: int
    path_prefix: str | None = None
    delay: float | None = None

    def matches(self, path: str) -> bool:
        if self.path_prefix is None:
            return path.startswith("/v1/") or path == "/v1"
        return path.startswith(self.path_prefix)


class FaultInjector:
    """A queue of faults; the first fault matching a request's path is consumed by it.

    Without a `path_prefix` a fault matches API requests (`/v1/...`) only; with one, it matches any path
    with that prefix, so `path_prefix="/oauth/token"` faults the token endpoint.
    """

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def inject(
        self, kind: str, count: int = 1, path_prefix: str | None = None, delay: float | None = None
    ) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known kinds: {', '.join(FAULT_KINDS)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"fault count must be a whole number of at least 1, got {count!r}")
        if path_prefix is not None and (not isinstance(path_prefix, str) or not path_prefix.startswith("/")):
            raise ValueError(f"path_prefix must be a path starting with '/', got {path_prefix!r}")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0):
            raise ValueError(f"delay must be a number of seconds, zero or more, got {delay!r}")
        with self._lock:
            self._faults.append(Fault(kind, count, path_prefix, None if delay is None else float(delay)))

    def take(self, path: str) -> Fault | None:
        """Consume one use of the first fault matching `path`."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return Fault(fault.kind, 1, fault.path_prefix, fault.delay)
        return None

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"kind": f.kind, "remaining": f.remaining, "path_prefix": f.path_prefix, "delay": f.delay}
                for f in self._faults
            ]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


@dataclass
class ResourceDrift:
    extra_fields: dict[str, Any]
    missing_fields: list[str]
    omit_has_more: bool


class DriftRegistry:
    """Per-resource schema drift applied to list and get responses (never to the stored records)."""

    def __init__(self, resources: tuple[str, ...]) -> None:
        self._resources = resources
        self._drift: dict[str, ResourceDrift] = {}
        self._lock = threading.Lock()

    def set(
        self,
        resource: str,
        extra_fields: dict[str, Any] | None = None,
        missing_fields: list[str] | None = None,
        omit_has_more: bool | None = None,
    ) -> None:
        """Add to the drift of `resource`; arguments left as None keep their current setting."""
        if resource not in self._resources:
            raise ValueError(f"unknown resource {resource!r}; known: {', '.join(self._resources)}")
        if extra_fields is not None and not isinstance(extra_fields, dict):
            raise ValueError(f"extra_fields must be an object of field name to value, got {extra_fields!r}")
        if missing_fields is not None and (
            not isinstance(missing_fields, list) or not all(isinstance(f, str) for f in missing_fields)
        ):
            raise ValueError(f"missing_fields must be a list of field names, got {missing_fields!r}")
        if omit_has_more is not None and not isinstance(omit_has_more, bool):
            raise ValueError(f"omit_has_more must be true or false, got {omit_has_more!r}")
        with self._lock:
            current = self._drift.get(resource, ResourceDrift({}, [], False))
            self._drift[resource] = ResourceDrift(
                extra_fields=dict(current.extra_fields) | (extra_fields or {}),
                missing_fields=sorted(set(current.missing_fields) | set(missing_fields or [])),
                omit_has_more=current.omit_has_more if omit_has_more is None else omit_has_more,
            )

    def clear(self, resource: str | None = None) -> None:
        with self._lock:
            if resource is None:
                self._drift.clear()
            else:
                self._drift.pop(resource, None)

    def get(self, resource: str) -> ResourceDrift | None:
        with self._lock:
            return self._drift.get(resource)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                name: {
                    "extra_fields": d.extra_fields,
                    "missing_fields": d.missing_fields,
                    "omit_has_more": d.omit_has_more,
                }
                for name, d in self._drift.items()
            }


def apply_drift(record: dict[str, Any], drift: ResourceDrift | None) -> dict[str, Any]:
    """A shallow copy of `record` with the drift's fields added and removed (the record is untouched)."""
    if drift is None or (not drift.extra_fields and not drift.missing_fields):
        return record
    drifted = {key: value for key, value in record.items() if key not in drift.missing_fields}
    drifted.update(drift.extra_fields)
    return drifted
