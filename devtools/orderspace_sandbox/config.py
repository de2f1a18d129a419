"""The sandbox's knobs: one dataclass, validated on creation so bad values fail with a clear message."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

SCALES = ("tiny", "small", "large")

FAULT_KINDS = (
    "500_html",
    "502_html",
    "503_empty",
    "500_json",
    "slow",
    "drop",
    "429",
    "401_empty",
    "400_html",
)


def parse_fault_spec(spec: str) -> tuple[str, int]:
    """`"500_html:3"` -> `("500_html", 3)`, `"drop"` -> `("drop", 1)`; ValueError naming the problem."""
    kind, _, count_text = spec.strip().partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r} in {spec!r}; known kinds: {', '.join(FAULT_KINDS)}")
    if not count_text:
        return kind, 1
    try:
        count = int(count_text)
    except ValueError:
        raise ValueError(f"fault count must be a whole number in {spec!r}, got {count_text!r}") from None
    if count < 1:
        raise ValueError(f"fault count must be at least 1 in {spec!r}, got {count}")
    return kind, count


@dataclass
class SandboxConfig:
    """Everything that shapes one sandbox account and its server.

    `rate_window` and `token_ttl` are the time knobs: tests shrink them so nothing waits real minutes.
    `client_secret` is kept out of the repr.
    """

    host: str = "127.0.0.1"
    port: int = 0  # 0 = an ephemeral port chosen by the OS
    seed: int = 42
    scale: str = "tiny"
    rate_limit: int = 60  # requests allowed in any `rate_window` seconds
    rate_window: float = 60.0
    token_ttl: float = 1800.0
    client_id: str = "sandbox-client"
    client_secret: str = field(default="sandbox-secret", repr=False)
    max_page_size: int = 200  # the documented maximum `limit` of every paginated list
    end_date: date = date(2026, 11, 20)
    faults: list[str] = field(default_factory=list)  # startup faults, e.g. ["500_html:3", "drop"]
    latency: float = 0.0  # seconds added to every API request
    verbose: bool = False  # log every request to stderr
    # Change feed (see webhooks.py; the defaults are guesses, the docs give no numbers):
    activity: float = 0.0  # random changes per minute made in the background (0 = none)
    webhook_retry_base: float = 30.0  # seconds; the k-th retry waits k * this (incremental backoff)
    webhook_max_failures: int = 10  # consecutive failed attempts before a webhook is disabled
    webhook_timeout: float = 10.0  # seconds to wait for a receiver's answer
    webhook_allow_http: bool = False  # accept http:// webhook endpoints on 127.0.0.1 / localhost (not real)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        if not 0 <= int(self.port) <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if int(self.rate_limit) < 1:
            raise ValueError(f"rate_limit must be at least 1, got {self.rate_limit}")
        for name in ("rate_window", "token_ttl"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be greater than zero, got {getattr(self, name)}")
        if self.latency < 0:
            raise ValueError(f"latency must be zero or more, got {self.latency}")
        if self.activity < 0:
            raise ValueError(f"activity must be zero or more changes per minute, got {self.activity}")
        if self.webhook_retry_base < 0:
            raise ValueError(f"webhook_retry_base must be zero or more, got {self.webhook_retry_base}")
        if int(self.webhook_max_failures) < 1:
            raise ValueError(f"webhook_max_failures must be at least 1, got {self.webhook_max_failures}")
        if self.webhook_timeout <= 0:
            raise ValueError(f"webhook_timeout must be greater than zero, got {self.webhook_timeout}")
        if int(self.max_page_size) < 1:
            raise ValueError(f"max_page_size must be at least 1, got {self.max_page_size}")
        if not self.client_id or not self.client_secret:
            raise ValueError("client_id and client_secret must not be empty")
        for spec in self.faults:
            parse_fault_spec(spec)
