"""Typed errors for the Orderspace client, and the one place that turns an HTTP error response into one.

Every error reads well on its own: `str(exc)` names the status, the method and path, the server's message
(from a JSON, HTML, plain-text or empty body) and the request id, e.g.
"422 Unprocessable Entity from POST /v1/dispatches: The order has already been fulfilled (request id abc123)".
Messages never carry request headers, request bodies, tokens or the client secret.
"""

from __future__ import annotations

import copy
import html
import json
import re
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any, Self

import httpx

# The one configuration error type (a ValueError, not an OrderspaceError: nothing was asked of the API).
from orderspace_pipelines.settings import ConfigurationError as ConfigurationError

MESSAGE_LIMIT = 200
REQUEST_ID_HEADERS = ("x-request-id", "request-id", "x-amzn-requestid", "x-correlation-id", "cf-ray")
EMPTY_BODY = "(empty response body)"
_MESSAGE_KEYS = ("message", "error_description", "error", "detail", "errors", "title")


class OrderspaceError(Exception):
    """Base of every error the client raises."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def with_prefix(self, prefix: str, **attributes: Any) -> Self:
        """A copy of this error whose message starts with `prefix` (extra attributes set on the copy)."""
        clone = copy.copy(self)
        clone.message = f"{prefix}: {self.message}"
        clone.args = (clone.message,)
        for name, value in attributes.items():
            setattr(clone, name, value)
        return clone


class TransportError(OrderspaceError):
    """The network failed and retries (where safe) did not help.

    `maybe_processed` is True when the request may have reached the server before the failure (a dropped
    connection or read timeout on a POST): the caller must reconcile before trying again.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        url: str = "",
        attempts: int = 1,
        maybe_processed: bool = False,
    ) -> None:
        super().__init__(message)
        self.method = method
        self.url = url
        self.attempts = attempts
        self.maybe_processed = maybe_processed


class ResponseFormatError(OrderspaceError):
    """A response body that is not the JSON shape expected (not JSON, missing list key, broken pagination)."""


class APIError(OrderspaceError):
    """The API answered with an error status."""

    def __init__(
        self, status: int, message: str, request_id: str | None = None, method: str = "", url: str = ""
    ) -> None:
        self.status = status
        self.request_id = request_id
        self.method = method
        self.url = url
        super().__init__(message)

    def __str__(self) -> str:
        text = f"{self.status} {status_phrase(self.status)} from {self.method} {self.url}: {self.message}"
        if self.request_id:
            text += f" (request id {self.request_id})"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            self.__class__,
            (self.status, self.message, self.request_id, self.method, self.url),
            self.__dict__,
        )


class BadRequestError(APIError):
    """400: the request was malformed or missed a required parameter."""


class AuthenticationError(APIError):
    """401, or the identity server refused to issue a token."""


class NotFoundError(APIError):
    """404: no such endpoint or record."""


class ValidationError(APIError):
    """422: the API understood the request but refused it (validation, business rule)."""


class RateLimitError(APIError):
    """429 that persisted after the client's waits and retries."""


class ServerError(APIError):
    """5xx from the API (after retries where retrying was safe)."""


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    422: ValidationError,
    429: RateLimitError,
}


def status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def error_class_for(status: int) -> type[APIError]:
    if status >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status, APIError)


def display_url(url: httpx.URL) -> str:
    """The path (and query) of a URL, as shown in messages: no scheme, host or credentials."""
    text = url.raw_path.decode("ascii", errors="replace")
    return text or "/"


def request_id_of(response: httpx.Response, body: Any = None) -> str | None:
    for header in REQUEST_ID_HEADERS:
        value = response.headers.get(header)
        if value and value.strip():
            return value.strip()
    if isinstance(body, dict):
        for key in ("request_id", "requestId"):
            if isinstance(body.get(key), str | int) and str(body[key]).strip():
                return str(body[key]).strip()
    return None


def truncate(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def html_to_text(markup: str) -> str:
    """Visible text of an HTML page: scripts and styles dropped, tags stripped, entities decoded."""
    markup = re.sub(r"(?is)<(script|style|head)\b.*?</\1\s*>", " ", markup)
    title = re.search(r"(?is)<title[^>]*>(.*?)</title>", markup)
    text = re.sub(r"(?s)<[^>]*>", " ", markup)
    text = " ".join(html.unescape(text).split())
    if not text and title:
        text = " ".join(html.unescape(title.group(1)).split())
    return text


def _message_from_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, dict):
        for key in _MESSAGE_KEYS:
            nested = value.get(key)
            if key == "errors" and isinstance(nested, dict):  # {"errors": {"email": ["is taken"]}}
                parts = [
                    f"{field} {text}"
                    for field, problems in nested.items()
                    if (text := _message_from_value(problems))
                ]
                found = "; ".join(parts) or None
            else:
                found = _message_from_value(nested)
            if found:
                return found
        return None
    if isinstance(value, list):
        parts = [text for item in value if (text := _message_from_value(item))]
        return "; ".join(parts) or None
    return str(value)


def message_from_body(response: httpx.Response) -> tuple[str, Any]:
    """A readable one-line message from an error body, whatever its shape; also the parsed JSON if any."""
    try:
        raw = response.content
    except httpx.ResponseNotRead:
        raw = response.read()
    text = raw.decode(response.encoding or "utf-8", errors="replace").strip()
    if not text:
        return EMPTY_BODY, None
    content_type = response.headers.get("content-type", "").lower()
    parsed: Any = None
    if "json" in content_type or text[:1] in "{[":
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    if parsed is not None:
        found = _message_from_value(parsed)
        return truncate(found or json.dumps(parsed, separators=(",", ":"))), parsed
    if "html" in content_type or re.match(r"(?is)\s*<(!doctype|html|head|body|\w+[^>]*>)", text):
        return truncate(html_to_text(text) or "(HTML page without text)"), None
    return truncate(text), None


_CHALLENGE_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def bearer_challenge(response: httpx.Response) -> dict[str, str]:
    """The parameters of a `WWW-Authenticate: Bearer ...` header (RFC 6750), e.g. `error`,
    `error_description`; {} when there is none."""
    header = response.headers.get("www-authenticate", "").strip()
    if not header.lower().startswith("bearer"):
        return {}
    params: dict[str, str] = {}
    for match in _CHALLENGE_PARAM.finditer(header[len("bearer") :]):
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return params


def unauthorized_message(response: httpx.Response) -> str | None:
    """What a 401's `WWW-Authenticate` says about the token: expired, invalid, or its own words.

    The real API answers a refused token with an empty `text/html` body and
    `WWW-Authenticate: Bearer realm="Orderspace", error="invalid_token", error_description="The access token
    expired"` (or "... is invalid"): the header is the only place that tells the two apart.
    """
    challenge = bearer_challenge(response)
    description = " ".join(challenge.get("error_description", "").split())
    error = challenge.get("error", "").strip()
    if not description and not error:
        return None
    lowered = description.lower()
    if "expired" in lowered:
        verdict = "the access token expired"
    elif error == "invalid_token" or "invalid" in lowered:
        verdict = "the access token is invalid"
    else:
        verdict = "the access token was refused"
    detail = "; ".join(part for part in (f"error={error}" if error else "", description) if part)
    return truncate(f"{verdict} (WWW-Authenticate: {detail})")


def _query_names(request: httpx.Request) -> list[str]:
    return sorted({name for name, _ in request.url.params.multi_items()})


def redact(text: str, secrets: Iterable[str | None]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def error_from_response(
    response: httpx.Response, *, hint: str | None = None, secrets: Iterable[str | None] = ()
) -> APIError:
    """The typed APIError for an error response; `hint` is appended to the server's message."""
    message, parsed = message_from_body(response)
    if parsed is None and message == EMPTY_BODY:
        if response.status_code == 401:
            message = unauthorized_message(response) or message
        elif response.status_code == 400:
            # The real API's 400 has an empty body: it never says which parameter it refused.
            names = _query_names(response.request)
            sent = f"; the query parameters sent were {', '.join(names)}" if names else ""
            message = f"empty body: the API refused the request without giving a reason{sent}"
    if hint:
        message = f"{message}. {hint}"
    message = redact(message, secrets)
    request = response.request
    return error_class_for(response.status_code)(
        response.status_code,
        message,
        request_id_of(response, parsed),
        request.method,
        display_url(request.url),
    )
