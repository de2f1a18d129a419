"""The project's one webhook subscription: create or update it (`register`), and check on it (`status`).

`register(url)` looks for the webhook this project owns, first by the id in the key file (one GET), then by
endpoint among the account's webhooks (one list), updates it to `url` and every event type, or creates it if
neither finds one; so running it twice leaves one subscription. The signing key comes from the create/update
response (the reference shows `signing_key` in every webhook object; when a response lacks it, one GET asks
for it) and goes to the 0600 key file, never to the output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from orderspace_pipelines.client.errors import NotFoundError
from orderspace_pipelines.webhooks.events import EVENT_TYPES
from orderspace_pipelines.webhooks.signing import Subscription, load_subscription, save_subscription
from orderspace_pipelines.webhooks.store import StoreStats, open_store


class WebhookApi(Protocol):
    """The part of `OrderspaceClient` used here."""

    def list_webhooks(self) -> Any: ...
    def get_webhook(self, webhook_id: str) -> dict[str, Any]: ...
    def create_webhook(self, webhook: Mapping[str, Any]) -> dict[str, Any]: ...
    def update_webhook(self, webhook_id: str, changes: Mapping[str, Any]) -> dict[str, Any]: ...


class RegisterError(RuntimeError):
    """Orderspace answered in a way `register` cannot use (the message says how; never the key)."""


@dataclass(frozen=True)
class Registered:
    action: str  # "created" or "updated"
    webhook_id: str
    endpoint: str
    key_file: Path
    notes: list[str] = field(default_factory=list)


def _wanted(url: str) -> dict[str, Any]:
    return {"endpoint": url, "events": list(EVENT_TYPES)}


def _find_existing(
    api: WebhookApi, stored: Subscription | None, url: str
) -> tuple[dict[str, Any] | None, list[str]]:
    notes: list[str] = []
    if stored is not None:
        try:
            return api.get_webhook(stored.webhook_id), notes
        except NotFoundError:
            notes.append(f"the stored webhook {stored.webhook_id} no longer exists at Orderspace")
    endpoints = {url} | ({stored.endpoint} if stored else set())
    matches = [hook for hook in api.list_webhooks() if hook.get("endpoint") in endpoints]
    if len(matches) > 1:
        others = ", ".join(str(hook.get("id")) for hook in matches[1:])
        notes.append(
            f"{len(matches)} webhooks point at this endpoint; updated the newest, left {others} alone "
            "(duplicate deliveries are stored once)"
        )
    return (matches[0] if matches else None), notes


def register(api: WebhookApi, url: str, key_file: Path, *, now: datetime | None = None) -> Registered:
    """Create or update the project's webhook for `url` and every event type; store its signing key."""
    stored = load_subscription(key_file)
    existing, notes = _find_existing(api, stored, url)
    if existing is None:
        webhook, action = api.create_webhook(_wanted(url)), "created"
    else:
        webhook_id = str(existing.get("id") or "")
        if not webhook_id:
            raise RegisterError("Orderspace listed a webhook without an id; cannot update it")
        webhook, action = api.update_webhook(webhook_id, _wanted(url)), "updated"
    webhook_id = str(webhook.get("id") or "")
    if not webhook_id:
        raise RegisterError(f"Orderspace's answer to the webhook {action} has no id")
    key = webhook.get("signing_key")
    if not isinstance(key, str) or not key:
        key = api.get_webhook(webhook_id).get("signing_key")
    if not isinstance(key, str) or not key:
        raise RegisterError(f"Orderspace did not return webhook {webhook_id}'s signing key; nothing stored")
    save_subscription(
        key_file,
        Subscription(
            webhook_id, str(webhook.get("endpoint") or url), key, registered_at=now or datetime.now(UTC)
        ),
    )
    missing = sorted(set(EVENT_TYPES) - set(webhook.get("events") or []))
    if missing:
        notes.append(f"Orderspace did not subscribe these event types: {', '.join(missing)}")
    return Registered(action, webhook_id, str(webhook.get("endpoint") or url), Path(key_file), notes)


# -- status -------------------------------------------------------------------------------------------

STATUS_OK, STATUS_UNREACHABLE, STATUS_MISSING, STATUS_STALE = 0, 1, 3, 4


def enabled_state(webhook: Mapping[str, Any]) -> bool | None:
    """Whether the API says the webhook is enabled; None when it does not say. The reference's webhook
    object has no such field; these names are guesses at what a disabled webhook could carry."""
    for name, meaning in (("enabled", True), ("active", True), ("disabled", False)):
        value = webhook.get(name)
        if isinstance(value, bool):
            return value if meaning else not value
    status = webhook.get("status")
    if isinstance(status, str) and status:
        return status.lower() in ("enabled", "active")
    return None


def _ago(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds / 3600:.1f} h ago"


@dataclass
class StatusReport:
    lines: list[str]
    exit_code: int


def describe_store(
    stats: StoreStats, now: datetime, stale_after: timedelta, since: datetime | None
) -> tuple[list[str], bool]:
    """The store's lines of the status, and whether deliveries are stale."""
    lines = []
    last = stats.last_received_at
    lines.append(
        f"last delivery: {last.isoformat(timespec='seconds')} ({_ago(last, now)})"
        if last
        else "last delivery: none yet"
    )
    pending = ", ".join(f"{name} {count}" for name, count in stats.pending.items())
    lines.append(f"pending events: {stats.pending_total} ({pending})")
    if stats.unknown_pending:
        lines.append(f"  of which {stats.unknown_pending} of event types this version does not know")
    applied = stats.last_applied_at
    lines.append(
        f"last applied: {applied.isoformat(timespec='seconds')} ({_ago(applied, now)})"
        if applied
        else "last applied: never"
    )
    reference = last or since
    stale = reference is not None and now - reference > stale_after
    if stale:
        lines.append(
            f"WARNING: nothing has arrived for more than {stale_after.total_seconds() / 3600:g} h "
            "(ORDERSPACE_WEBHOOK_STALE_HOURS): is the receiver reachable and the webhook enabled?"
        )
    return lines, stale


def status(
    api: WebhookApi | None,
    key_file: Path,
    stats: StoreStats,
    *,
    stale_after: timedelta,
    now: datetime | None = None,
) -> StatusReport:
    """The subscription (at most one API request: GET the stored webhook) and the store, with an exit code:
    0 all well, 3 no subscription (never registered, gone at Orderspace, or disabled), 4 deliveries stale.
    `api` None: no request (the caller found no key file)."""
    now = now or datetime.now(UTC)
    stored = load_subscription(key_file)
    lines: list[str] = []
    code = STATUS_OK
    if stored is None or api is None:
        lines.append(f"subscription: not registered (no key file at {key_file}); run `webhooks register URL`")
        code = STATUS_MISSING
    else:
        try:
            webhook = api.get_webhook(stored.webhook_id)
        except NotFoundError:
            webhook = None
        if webhook is None:
            lines.append(
                f"subscription: MISSING: webhook {stored.webhook_id} no longer exists at Orderspace; "
                "run `webhooks register URL` again"
            )
            code = STATUS_MISSING
        else:
            events = set(webhook.get("events") or [])
            enabled = enabled_state(webhook)
            state = {True: "enabled", False: "DISABLED", None: "enabled/disabled not reported by the API"}[
                enabled
            ]
            lines.append(
                f"subscription: {stored.webhook_id} -> {webhook.get('endpoint')} "
                f"({len(events & set(EVENT_TYPES))}/{len(EVENT_TYPES)} event types; {state})"
            )
            if enabled is False:
                code = STATUS_MISSING
            missing = sorted(set(EVENT_TYPES) - events)
            if missing:
                lines.append(f"  not subscribed: {', '.join(missing)}; run `webhooks register URL` again")
    store_lines, stale = describe_store(stats, now, stale_after, stored.registered_at if stored else None)
    lines += store_lines
    if stale and code == STATUS_OK:
        code = STATUS_STALE
    return StatusReport(lines, code)


def current_status(
    data_dir: Path,
    key_file: Path,
    *,
    stale_after: timedelta,
    open_api: Callable[[], AbstractContextManager[WebhookApi]],
    database_url: SecretStr | None = None,
) -> StatusReport:
    """`status` over the event store (under `data_dir`, or in Postgres when `database_url` is set); the API
    is opened only if a subscription is stored."""
    store = open_store(data_dir, database_url)
    try:
        stats = store.stats()
    finally:
        store.close()
    if load_subscription(key_file) is None:
        return status(None, key_file, stats, stale_after=stale_after)
    with open_api() as api:
        return status(api, key_file, stats, stale_after=stale_after)
