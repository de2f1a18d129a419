"""OAuth2 client-credentials authentication for the Orderspace API, as an `httpx.Auth`.

The token is fetched from the identity server with its own small httpx client (its requests do not spend
the API's request budget: the identity server is a separate service), cached, and renewed shortly before it
expires. A 401 from the API renews the token once and retries the request with the new one. One lock makes it
safe to share between threads: concurrent requests that find the token stale trigger a single renewal.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass

import httpx

from orderspace_pipelines.client.errors import (
    AuthenticationError,
    ResponseFormatError,
    TransportError,
    display_url,
    error_from_response,
)

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
    obtained_at: float  # time.monotonic()
    lifetime: float

    @property
    def renew_at(self) -> float:
        margin = min(RENEW_MARGIN_SECONDS, RENEW_MARGIN_FRACTION * self.lifetime)
        return self.obtained_at + self.lifetime - margin

    def __repr__(self) -> str:
        return f"_Token(lifetime={self.lifetime})"


class ClientCredentialsAuth(httpx.Auth):
    """Bearer-token auth for a private app. `repr()` never shows the secret or the token.

    `transport` sends the token requests (default: an `httpx.HTTPTransport` retrying failed connects);
    `close()` closes it.
    """

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self._http = httpx.Client(
            transport=transport or httpx.HTTPTransport(retries=2, socket_options=NO_DELAY),
            timeout=timeout,
            headers={"Accept": "application/json", "User-Agent": "orderspace-pipelines"},
        )
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self.tokens_fetched = 0

    def __repr__(self) -> str:
        state = "cached" if self._token else "none"
        where = f"token_url={self.token_url!r}, client_id={self.client_id!r}"
        return f"ClientCredentialsAuth({where}, token={state})"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in messages (for redaction by callers)."""
        token = self._token
        return (self._client_secret, token.value) if token else (self._client_secret,)

    def close(self) -> None:
        self._http.close()

    # -- token cache -------------------------------------------------------------------------------------

    def token(self) -> str:
        """A valid access token: the cached one, or a new one when it is missing or near expiry."""
        with self._lock:
            current = self._token
            if current is None or time.monotonic() >= current.renew_at:
                if current is not None:
                    logger.info("Renewing the Orderspace access token before it expires")
                current = self._fetch_token()
                self._token = current
            return current.value

    def renew(self, rejected: str) -> str:
        """A fresh token after the API rejected `rejected` (another thread's renewal is reused)."""
        with self._lock:
            current = self._token
            if current is None or current.value == rejected:
                logger.info("The API rejected the access token (401): fetching a new one and retrying once")
                current = self._fetch_token()
                self._token = current
            return current.value

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
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not value.strip():
            keys = sorted(body) if isinstance(body, dict) else type(body).__name__
            raise ResponseFormatError(
                f"the identity server's token response (POST {display_url(response.request.url)}) has no "
                f"access_token; it held: {keys}"
            )
        lifetime = DEFAULT_TOKEN_LIFETIME
        raw_lifetime = body.get("expires_in")
        try:
            if raw_lifetime is not None and float(raw_lifetime) > 0:
                lifetime = float(raw_lifetime)
        except (TypeError, ValueError):
            logger.warning("Ignoring the token response's unreadable expires_in; assuming %.0f s", lifetime)
        logger.debug("Obtained an Orderspace access token valid for %.0f s", lifetime)
        return _Token(value=value.strip(), obtained_at=time.monotonic(), lifetime=lifetime)

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
