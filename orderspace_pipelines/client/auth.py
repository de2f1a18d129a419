"""OAuth2 client-credentials authentication for the Orderspace API, as an `httpx.Auth`.

The token is fetched from the identity server with its own small httpx client (its requests do not spend
the API's request budget: the identity server is a separate service), shared through a `TokenStore` with the
account's other clients and processes, and renewed shortly before it expires. A 401 from the API renews the
token once (dropping the shared token if it is still the rejected one) and retries the request with the new
one. One lock makes it safe to share between threads, the store's lock between processes: concurrent requests
that find the token stale trigger a single renewal.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import httpx

from orderspace_pipelines.client.errors import (
    AuthenticationError,
    ResponseFormatError,
    TransportError,
    display_url,
    error_from_response,
)
from orderspace_pipelines.client.token_store import StoredToken, TokenStore, TokenStoreError, secret_digest

logger = logging.getLogger("orderspace_pipelines.client")

DEFAULT_TOKEN_LIFETIME = 1800.0  # the documented lifetime, used when a token response omits `expires_in`
RENEW_MARGIN_SECONDS = 60.0
RENEW_MARGIN_FRACTION = 0.1
NO_DELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
CREDENTIALS_HINT = (
    "The identity server refused the client credentials: check ORDERSPACE_CLIENT_ID and "
    "ORDERSPACE_CLIENT_SECRET (and ORDERSPACE_TOKEN_URL)"
)


@dataclass(frozen=True)
class _Token:
    value: str
    obtained_at: float  # time.time(): wall clock, so a token shared between processes keeps its meaning
    lifetime: float

    @property
    def renew_at(self) -> float:
        margin = min(RENEW_MARGIN_SECONDS, RENEW_MARGIN_FRACTION * self.lifetime)
        return self.obtained_at + self.lifetime - margin

    def fresh(self) -> bool:
        """Whether it has enough life left to be used (not yet inside the renewal margin)."""
        return time.time() < self.renew_at

    def __repr__(self) -> str:
        return f"_Token(lifetime={self.lifetime})"


class ClientCredentialsAuth(httpx.Auth):
    """Bearer-token auth for a private app. `repr()` never shows the secret or the token.

    `transport` sends the token requests (default: an `httpx.HTTPTransport` retrying failed connects);
    `close()` closes it. `store` shares the token with the account's other clients and processes (see
    `token_store.py`); without one, each instance fetches its own.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        store: TokenStore | None = None,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self._secret_sha256 = secret_digest(client_id, client_secret)
        self.store = store
        self._http = httpx.Client(
            transport=transport or httpx.HTTPTransport(retries=2, socket_options=NO_DELAY),
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": "orderspace-pipelines"},
        )
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self.tokens_fetched = 0
        self.tokens_shared = 0  # tokens taken from the store instead of fetched

    def __repr__(self) -> str:
        state = "cached" if self._token else "none"
        where = f"token_url={self.token_url!r}, client_id={self.client_id!r}"
        return f"ClientCredentialsAuth({where}, token={state}, store={self.store!r})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in messages (for redaction by callers)."""
        token = self._token
        return (self._client_secret, token.value) if token else (self._client_secret,)

    def close(self) -> None:
        self._http.close()

    # -- token cache -------------------------------------------------------------------------------------

    def token(self) -> str:
        """A valid access token: this instance's, the store's, or a new one when neither has life left."""
        with self._lock:
            current = self._token
            if current is None or not current.fresh():
                if current is not None:
                    logger.info("Renewing the Orderspace access token before it expires")
                current = self._obtain(rejected=None)
                self._token = current
            return current.value

    def renew(self, rejected: str) -> str:
        """A fresh token once the API rejected `rejected` (reusing another thread's or process's renewal)."""
        with self._lock:
            current = self._token
            if current is None or current.value == rejected:
                logger.info("The API rejected the access token (401): renewing it and retrying once")
                current = self._obtain(rejected=rejected)
                self._token = current
            return current.value

    # -- the shared store --------------------------------------------------------------------------------

    def _usable(self, stored: StoredToken | None, rejected: str | None) -> _Token | None:
        """The stored token if bound to these credentials, not the rejected one and not near expiry."""
        if (
            stored is None
            or stored.client_id != self.client_id
            or stored.secret_sha256 != self._secret_sha256
        ):
            return None
        if rejected is not None and stored.value == rejected:
            return None
        token = _Token(
            value=stored.value, obtained_at=stored.expires_at - stored.lifetime, lifetime=stored.lifetime
        )
        return token if token.fresh() else None

    def _obtain(self, rejected: str | None) -> _Token:
        """The store's token if usable; otherwise a new one, fetched once across processes and stored.

        After a 401 (`rejected` set) the stored token is dropped only if it is still the rejected one: a
        process that already renewed it is trusted. Store failures are logged and cost a token, nothing more.
        """
        store = self.store
        if store is None:
            return self._fetch_token()
        try:
            shared = self._usable(store.read(), rejected)
            if shared is not None:
                return self._adopt(shared)
            with store.locked():
                shared = self._usable(store.read(), rejected)  # another process may have just renewed it
                if shared is not None:
                    return self._adopt(shared)
                if rejected is not None and store.discard(rejected):
                    logger.info("Dropped the rejected access token from the shared token cache")
                token = self._fetch_token()
                stored = StoredToken(
                    value=token.value,
                    expires_at=token.obtained_at + token.lifetime,
                    lifetime=token.lifetime,
                    client_id=self.client_id,
                    secret_sha256=self._secret_sha256,
                )
                try:
                    store.write(stored)
                except TokenStoreError as exc:  # the token is good: use it, unshared
                    logger.warning("Could not share the new access token (%s); using it unshared", exc)
                return token
        except TokenStoreError as exc:
            logger.warning(
                "The shared token cache is unusable (%s): fetching a token for this client only", exc
            )
            return self._fetch_token()

    def _adopt(self, token: _Token) -> _Token:
        self.tokens_shared += 1
        logger.debug(
            "Using the shared Orderspace access token (%.0f s left)",
            token.obtained_at + token.lifetime - time.time(),
        )
        return token

    def _fetch_token(self) -> _Token:
        data = {
            "client_id": self.client_id,
            "client_secret": self._client_secret,
            "grant_type": "client_credentials",
        }
        try:
            response = self._http.post(self.token_url, data=data)
        except httpx.TransportError as exc:
            raise TransportError(
                f"could not reach the identity server at {self.token_url}: {type(exc).__name__}",
                method="POST",
                url=self.token_url,
            ) from None
        self.tokens_fetched += 1
        try:
            response.read()
        finally:
            response.close()
        if response.status_code != 200:
            hint = CREDENTIALS_HINT if response.status_code in (400, 401, 403) else None
            error = error_from_response(response, hint=hint, secrets=(self._client_secret,))
            raise AuthenticationError(
                error.status, error.message, error.request_id, "POST", display_url(response.request.url)
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        token = token_from_body(body, f"POST {display_url(response.request.url)}")
        logger.debug("Obtained an Orderspace access token valid for %.0f s", token.lifetime)
        return token

    # -- httpx.Auth --------------------------------------------------------------------------------------

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            fresh = self.renew(token)
            request.headers["Authorization"] = f"Bearer {fresh}"
            yield request

    async def async_auth_flow(self, request: httpx.Request):  # type: ignore[override]
        raise NotImplementedError("ClientCredentialsAuth supports the synchronous httpx.Client only")


def token_from_body(body: Any, where: str, *, now: float | None = None) -> _Token:
    """The token of a 200 token response's JSON `body` (`where` names the request in errors).

    `expires_in` missing, unreadable or not positive means `DEFAULT_TOKEN_LIFETIME` (a guess, logged).
    """
    value = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value.strip():
        keys = sorted(body) if isinstance(body, dict) else type(body).__name__
        raise ResponseFormatError(
            f"the identity server's token response ({where}) has no access_token; it held: {keys}"
        )
    lifetime = DEFAULT_TOKEN_LIFETIME
    raw_lifetime = body.get("expires_in")
    try:
        if raw_lifetime is not None and float(raw_lifetime) > 0:
            lifetime = float(raw_lifetime)
    except (TypeError, ValueError):
        logger.warning("Ignoring the token response's unreadable expires_in; assuming %.0f s", lifetime)
    return _Token(value=value.strip(), obtained_at=time.time() if now is None else now, lifetime=lifetime)
