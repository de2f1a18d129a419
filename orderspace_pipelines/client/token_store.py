"""Where access tokens are shared between the clients, steps, processes and runs of one account.

A token lives 30 minutes; without sharing, every Dagster step (its own client, often its own process) fetched
one of its own (a `sync` took 12). `ClientCredentialsAuth` asks its `TokenStore` first, and fetches (under the
store's lock, so N processes starting at once fetch one token, not N) only when the shared token is missing,
near expiry, bound to other credentials, or was just rejected by the API.

`FileTokenStore` keeps the tokens in a JSON file beside the throttle DB: created with mode 0600 (never
readable by anyone else, even for an instant: written to a 0600 temporary file, then renamed over the old
one), guarded by a `filelock` lock file (0600 too). It holds, per account key, the token, its expiry (epoch
seconds), the client id and the sha256 of the client id and secret the token was fetched with (so a rotated
secret is never served an old token). It never holds the secret itself. A cache it cannot read or write
only costs tokens: the auth falls back to fetching its own, with a warning.

The interface is small on purpose (a database-backed store will replace the file one): `read`, `write`,
`discard` (only if the stored token is still the one named) and `locked` (a cross-process critical section).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock
from filelock import Timeout as FileLockTimeout

from orderspace_pipelines import atomic

logger = logging.getLogger("orderspace_pipelines.client")

TOKEN_CACHE_ENV = "ORDERSPACE_TOKEN_CACHE"  # read by the settings model, interpreted here
DISABLED_VALUES = frozenset({"off", "none", "false", "0", "no", "disabled"})
FILE_MODE = 0o600
DIRECTORY_FILE_NAME = "orderspace-tokens.json"  # its name when ORDERSPACE_TOKEN_CACHE is a directory
FORMAT_VERSION = 1
LOCK_TIMEOUT_SECONDS = 120.0  # a token fetch retries for seconds at most; past this something is wrong


class TokenStoreError(Exception):
    """The store could not be read, written or locked (the auth then works without it)."""


def secret_digest(client_id: str, client_secret: str) -> str:
    """The sha256 (hex) binding a stored token to the credentials that fetched it."""
    return hashlib.sha256(f"{client_id}\0{client_secret}".encode()).hexdigest()


def account_key(api_url: str, token_url: str, client_id: str) -> str:
    """The key of one account's token: like the throttle bucket's, from the URLs and the client id."""
    return hashlib.sha256(f"{api_url}\0{token_url}\0{client_id}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class StoredToken:
    """A shared access token: its value, when it expires (epoch seconds), its lifetime when issued, and the
    client id and secret digest it belongs to. `repr()` never shows the value."""

    value: str
    expires_at: float
    lifetime: float
    client_id: str
    secret_sha256: str

    def __repr__(self) -> str:
        return f"StoredToken(client_id={self.client_id!r}, expires_at={self.expires_at:.0f})"

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.value,
            "expires_at": self.expires_at,
            "lifetime": self.lifetime,
            "client_id": self.client_id,
            "secret_sha256": self.secret_sha256,
        }

    @classmethod
    def from_json(cls, data: Any) -> StoredToken | None:
        """The token of one stored entry; None when the entry is malformed."""
        if not isinstance(data, dict):
            return None
        try:
            token = cls(
                value=str(data["access_token"]),
                expires_at=float(data["expires_at"]),
                lifetime=float(data["lifetime"]),
                client_id=str(data["client_id"]),
                secret_sha256=str(data["secret_sha256"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return token if token.value.strip() and token.lifetime > 0 else None


class TokenStore(Protocol):
    """One account's shared token (see the module docstring)."""

    def read(self) -> StoredToken | None:
        """The stored token, or None. Never blocks on the lock."""
        ...

    def write(self, token: StoredToken) -> None:
        """Store `token` (call inside `locked()`)."""
        ...

    def discard(self, value: str) -> bool:
        """Forget the stored token if it is still `value` (call inside `locked()`); True when it was."""
        ...

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """A critical section shared with every process using the same store."""
        ...


def default_token_cache_path(
    throttle_path: str | os.PathLike[str], configured: str | None = None
) -> Path | None:
    """`configured` (the settings' `ORDERSPACE_TOKEN_CACHE`: a file, or a directory to hold
    `orderspace-tokens.json`; `off` disables the cache), else a file beside the throttle DB named after it,
    so an account's cache sits with its bucket."""
    configured = (configured or "").strip()
    if configured.lower() in DISABLED_VALUES:
        return None
    if configured:
        path = Path(configured).expanduser()
        if path.is_dir() or configured.endswith(("/", os.sep)):
            return path / DIRECTORY_FILE_NAME
        return path
    throttle = Path(throttle_path)
    return throttle.with_name(f"{throttle.stem}.tokens.json")


class FileTokenStore:
    """`TokenStore` in a 0600 JSON file shared by every process on the machine (entries keyed by account)."""

    def __init__(self, path: str | os.PathLike[str], key: str, *, lock_timeout: float = LOCK_TIMEOUT_SECONDS):
        self.path = Path(path)
        self.key = key
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._file_lock = FileLock(
            str(self._lock_path), timeout=lock_timeout, mode=FILE_MODE, thread_local=False
        )
        self._thread_lock = threading.RLock()

    def __repr__(self) -> str:
        return f"FileTokenStore(path={str(self.path)!r})"

    # -- reading -----------------------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        """Every entry of the file ({} when it is missing, unreadable, not ours or not private)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise TokenStoreError(f"cannot open the token cache {self.path}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    raise TokenStoreError(f"the token cache {self.path} is not a regular file")
                if info.st_mode & 0o077 or (hasattr(os, "getuid") and info.st_uid != os.getuid()):
                    logger.warning(
                        "Ignoring the token cache %s: not private to this user (mode %o); replacing it",
                        self.path,
                        stat.S_IMODE(info.st_mode),
                    )
                    return {}
                raw = handle.read()
        except OSError as exc:
            raise TokenStoreError(f"cannot read the token cache {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(raw)
        except ValueError:
            logger.warning("Ignoring the unreadable token cache %s; it will be replaced", self.path)
            return {}
        tokens = data.get("tokens") if isinstance(data, dict) else None
        return tokens if isinstance(tokens, dict) else {}

    def read(self) -> StoredToken | None:
        return StoredToken.from_json(self._load().get(self.key))

    # -- writing (inside `locked()`) ----------------------------------------------------------------------

    def _save(self, tokens: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"version": FORMAT_VERSION, "tokens": tokens}, indent=1).encode()
        # 0600 from the moment the temporary file exists, then atomically in place.
        atomic.write_bytes(self.path, lambda handle: handle.write(body), file_mode=FILE_MODE)

    def write(self, token: StoredToken) -> None:
        with self._thread_lock:
            tokens = self._load()
            tokens[self.key] = token.as_json()
            try:
                self._save(tokens)
            except OSError as exc:
                raise TokenStoreError(f"cannot write the token cache {self.path}: {exc.strerror}") from None

    def discard(self, value: str) -> bool:
        with self._thread_lock:
            tokens = self._load()
            current = StoredToken.from_json(tokens.get(self.key))
            if current is None or current.value != value:
                return False
            del tokens[self.key]
            try:
                self._save(tokens)
            except OSError as exc:
                raise TokenStoreError(f"cannot write the token cache {self.path}: {exc.strerror}") from None
            return True

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._thread_lock:
            try:
                self._lock_path.parent.mkdir(parents=True, exist_ok=True)
                self._file_lock.acquire()
            except FileLockTimeout:
                raise TokenStoreError(
                    f"timed out after {self._file_lock.timeout:.0f} s waiting for the token cache lock "
                    f"{self._lock_path}"
                ) from None
            except OSError as exc:
                raise TokenStoreError(
                    f"cannot lock the token cache {self._lock_path}: {exc.strerror}"
                ) from None
            try:
                yield
            finally:
                self._file_lock.release()


class MemoryTokenStore:
    """`TokenStore` held in memory: shared by the clients of one process only (tests, or a disabled cache
    replaced by an explicit in-process store)."""

    def __init__(self) -> None:
        self._token: StoredToken | None = None
        self._lock = threading.RLock()

    def read(self) -> StoredToken | None:
        return self._token

    def write(self, token: StoredToken) -> None:
        self._token = token

    def discard(self, value: str) -> bool:
        if self._token is not None and self._token.value == value:
            self._token = None
            return True
        return False

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            yield


__all__ = [
    "TOKEN_CACHE_ENV",
    "FileTokenStore",
    "MemoryTokenStore",
    "StoredToken",
    "TokenStore",
    "TokenStoreError",
    "account_key",
    "default_token_cache_path",
    "secret_digest",
]
