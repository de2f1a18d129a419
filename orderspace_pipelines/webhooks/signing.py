"""Webhook signatures and the signing key file.

`X-Orderspace-Signature` is base64(HMAC-SHA256(signing_key, raw body)) (the reference, "Validation");
`verify` compares in constant time. The key `register` receives is kept in one JSON file (default
`$ORDERSPACE_DATA_DIR/webhooks/signing_key.json`) with the webhook's id and endpoint, created 0600 through a
0600 temporary file and `os.replace`, so it is never readable by others, not even for a moment. The key is
never printed, logged, or put in an exception's text; `Subscription`'s repr hides it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SIGNATURE_HEADER = "X-Orderspace-Signature"
KEY_FILE = "signing_key.json"


class KeyFileError(RuntimeError):
    """The key file exists but cannot be read as ours (the message names the file, never its content)."""


def sign(signing_key: str, body: bytes) -> str:
    """The signature Orderspace sends for `body`."""
    digest = hmac.new(signing_key.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify(signing_key: str, body: bytes, signature: str | None) -> bool:
    """True when `signature` is `body`'s signature under `signing_key` (constant-time comparison)."""
    if not signature:
        return False
    expected = sign(signing_key, body).encode("ascii")
    return hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace"))


def key_file_path(data_dir: Path) -> Path:
    """`<data dir>/webhooks/signing_key.json`."""
    return Path(data_dir) / "webhooks" / KEY_FILE


@dataclass(frozen=True)
class Subscription:
    """The project's webhook as `register` left it: id, endpoint, signing key (hidden from repr)."""

    webhook_id: str
    endpoint: str
    signing_key: str = field(repr=False)
    registered_at: datetime


def save_subscription(path: Path, subscription: Subscription) -> None:
    """Write the key file atomically, readable and writable by the owner only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    content = json.dumps(
        {
            "webhook_id": subscription.webhook_id,
            "endpoint": subscription.endpoint,
            "signing_key": subscription.signing_key,
            "registered_at": subscription.registered_at.astimezone(UTC).isoformat(),
        },
        indent=2,
    )
    # mkstemp creates the file 0600 from the start; the key is never in a file anyone else can read.
    descriptor, temporary = tempfile.mkstemp(prefix=".signing_key.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_subscription(path: Path) -> Subscription | None:
    """The stored subscription, None when the file does not exist, `KeyFileError` when it is unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as error:
        raise KeyFileError(f"cannot read the webhook key file {path}: {error.strerror}") from None
    try:
        data = json.loads(text)
        subscription = Subscription(
            webhook_id=str(data["webhook_id"]),
            endpoint=str(data["endpoint"]),
            signing_key=str(data["signing_key"]),
            registered_at=datetime.fromisoformat(data["registered_at"]),
        )
    except (ValueError, KeyError, TypeError):
        raise KeyFileError(
            f"the webhook key file {path} is not one `webhooks register` wrote: run it again"
        ) from None
    if not subscription.signing_key:
        raise KeyFileError(f"the webhook key file {path} holds no signing key: run `webhooks register` again")
    return subscription


class KeySource:
    """The current signing key for the receiver, re-read when the key file changes (a `register` while
    `serve` runs takes effect on the next delivery). `current()` is None while there is no usable file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._key: str | None = None

    def __repr__(self) -> str:
        return f"KeySource({str(self.path)!r})"

    def current(self) -> str | None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        marker = (info.st_mtime_ns, info.st_size)
        with self._lock:
            if marker != self._seen:
                subscription = load_subscription(self.path)
                self._key = subscription.signing_key if subscription else None
                self._seen = marker
            return self._key
