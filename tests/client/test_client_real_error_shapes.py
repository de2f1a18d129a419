"""The real API's error responses, as recorded by a public client (`ecomba/orderspace-ruby`,
`spec/fixtures/responses.http/`), replayed through the whole client with `httpx.MockTransport`.

The responses are built here from the recorded facts (status, content type, empty or JSON body, the
`WWW-Authenticate` header); the point is how the client reads them: a 401's header says whether the token
expired or is invalid, a 400's empty body still yields a clear message, a 404's JSON message is surfaced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from orderspace_pipelines.client import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    OrderspaceClient,
)
from tests.client.conftest import mock_client

SECRET = "recorded-shapes-secret"


def _unauthorized(description: str) -> httpx.Response:
    # unauthorized.http / token_expired.http: 401, text/html, Content-Length 0, WWW-Authenticate Bearer.
    return httpx.Response(
        401,
        content=b"",
        headers={
            "Content-Type": "text/html",
            "Cache-Control": "private, no-store",
            "WWW-Authenticate": (
                f'Bearer realm="Orderspace", error="invalid_token", error_description="{description}"'
            ),
            "X-Request-Id": "e571927a-063f-4b42-a74a-7e450fa13296",
        },
    )


def _client(tmp_path: Path, api: httpx.Response) -> tuple[OrderspaceClient, list[str], list[str]]:
    """A client whose API always answers `api`; also the Authorization of each API request, and the tokens
    the token endpoint issued."""
    api_requests: list[str] = []
    tokens: list[str] = []

    def token() -> dict[str, Any]:
        tokens.append(f"token-{len(tokens) + 1}")
        return {"access_token": tokens[-1], "token_type": "Bearer", "expires_in": 1800}

    def answer(request: httpx.Request) -> httpx.Response:
        api_requests.append(request.headers["Authorization"])
        return httpx.Response(api.status_code, headers=api.headers, content=api.content)

    client = mock_client(
        tmp_path, answer, token=token, client_id="recorded-shapes", client_secret=SECRET, backoff_base=0.0
    )
    return client, api_requests, tokens


@pytest.mark.parametrize(
    ("description", "verdict"),
    [
        ("The access token expired", "the access token expired"),
        ("The access token is invalid", "the access token is invalid"),
    ],
)
def test_401_says_whether_the_token_expired_or_is_invalid(
    tmp_path: Path, description: str, verdict: str
) -> None:
    client, api_requests, tokens = _client(tmp_path, _unauthorized(description))
    with client, pytest.raises(AuthenticationError) as caught:
        list(client.list_orders())
    error = caught.value
    assert error.status == 401
    assert str(error) == (
        f"401 Unauthorized from GET /v1/orders?limit=200: {verdict} (WWW-Authenticate: "
        f"error=invalid_token; {description}). The API rejected a freshly issued access token; check the "
        "app's access (request id e571927a-063f-4b42-a74a-7e450fa13296)"
    )
    # The 401 renewed the token once and retried once, with the new token.
    assert tokens == ["token-1", "token-2"]
    assert api_requests == ["Bearer token-1", "Bearer token-2"]
    for token in tokens:
        assert token not in str(error) and token not in repr(error)
    assert SECRET not in str(error)


def test_401_without_a_challenge_header_still_reads_as_an_empty_body(tmp_path: Path) -> None:
    client, _, _ = _client(tmp_path, httpx.Response(401, content=b"", headers={"Content-Type": "text/html"}))
    with client, pytest.raises(AuthenticationError, match=r"limit=200: \(empty response body\)"):
        list(client.list_customers())


def test_400_with_an_empty_body_names_method_path_status_and_the_empty_body(tmp_path: Path) -> None:
    # bad_request.http: 400, text/html; charset=utf-8, Content-Length 0.
    recorded = httpx.Response(
        400,
        content=b"",
        headers={"Content-Type": "text/html; charset=utf-8", "X-Request-Id": "b8720ca6-b838"},
    )
    client, api_requests, _ = _client(tmp_path, recorded)
    with client, pytest.raises(BadRequestError) as caught:
        list(client.list_invoices(invoice_date_after="2026-01-01"))
    assert str(caught.value) == (
        "400 Bad Request from GET /v1/invoices?invoice_date_after=2026-01-01&limit=200: empty body: the API "
        "refused the request without giving a reason; the query parameters sent were invoice_date_after, "
        "limit (request id b8720ca6-b838)"
    )
    assert len(api_requests) == 1, "a 400 is not retried"


def test_404_for_a_missing_record_surfaces_the_api_message(tmp_path: Path) -> None:
    # get_order/no_order.http: 404, application/json, {"message":"Couldn't find order with id 42"}.
    recorded = httpx.Response(
        404,
        content=b'{"message":"Couldn\'t find order with id 42"}',
        headers={"Content-Type": "application/json; charset=utf-8", "X-Request-Id": "6545d97d"},
    )
    client, _, _ = _client(tmp_path, recorded)
    with client, pytest.raises(NotFoundError) as caught:
        client.get_order("42")
    assert caught.value.message == "Couldn't find order with id 42"
    assert str(caught.value) == (
        "404 Not Found from GET /v1/orders/42: Couldn't find order with id 42 (request id 6545d97d)"
    )


def test_404_html_page_for_an_unknown_path_reads_as_its_text(tmp_path: Path) -> None:
    # not_found.http: 404, text/html, a styled page whose visible text is a heading and a sentence.
    page = (
        "<!DOCTYPE html>\n<html>\n<head>\n    <title>404 Page Not Found</title>\n"
        '    <style type="text/css">body {background-color: #4D5C6B;}</style>\n</head>\n<body>\n<div>\n'
        "    <h1>Page Not Found</h1>\n"
        "    <p>You may have mistyped the address or the page may have moved.</p>\n"
        "</div>\n</body>\n</html>"
    )
    recorded = httpx.Response(
        404, content=page.encode(), headers={"Content-Type": "text/html; charset=utf-8"}
    )
    client, _, _ = _client(tmp_path, recorded)
    with client, pytest.raises(NotFoundError) as caught:
        client.request("GET", "no_such_things")
    assert caught.value.message == (
        "Page Not Found You may have mistyped the address or the page may have moved."
    )
