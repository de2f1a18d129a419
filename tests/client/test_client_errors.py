"""Error-body parsing and the small pure helpers: every error shape reads as one clear line."""

from __future__ import annotations

import httpx
import pytest

from orderspace_pipelines.client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ValidationError,
    error_from_response,
)
from orderspace_pipelines.client.throttle import budget_rates
from orderspace_pipelines.client.transport import parse_retry_after


def _response(status: int, body: bytes | str = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "http://127.0.0.1:1/v1/dispatches?limit=5")
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, content=content, headers=headers or {}, request=request)


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (
            '{"message": "The order has already been fulfilled"}',
            "application/json",
            "The order has already been fulfilled",
        ),
        ('{"error": "invalid_client"}', "application/json", "invalid_client"),
        ('{"error": {"message": "nested reason"}}', "application/json", "nested reason"),
        (
            '{"errors": ["Email is taken", "Phone is blank"]}',
            "application/json",
            "Email is taken; Phone is blank",
        ),
        ('{"errors": {"email": ["is taken"]}}', "application/json", "email is taken"),
        ('{"unexpected": 1}', "application/json", '{"unexpected":1}'),
        ("", "application/json", "(empty response body)"),
        ("   ", "text/plain", "(empty response body)"),
        ("Gateway exploded", "text/plain", "Gateway exploded"),
        (
            "<html><head><title>502</title><style>p{color:red}</style></head>"
            "<body><h1>Bad&nbsp;Gateway</h1>\n\n<p>upstream   failed</p></body></html>",
            "text/html",
            "Bad Gateway upstream failed",
        ),
        ("<!DOCTYPE html><html><body><p>no content type</p></body></html>", "", "no content type"),
    ],
)
def test_error_message_from_every_body_shape(body: str, content_type: str, expected: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    headers["x-request-id"] = "abc123"
    error = error_from_response(_response(422, body, headers))
    assert isinstance(error, ValidationError)
    assert error.message == expected
    assert (
        str(error)
        == f"422 Unprocessable Entity from POST /v1/dispatches?limit=5: {expected} (request id abc123)"
    )


def test_status_maps_to_error_class() -> None:
    expected = {
        400: BadRequestError,
        401: AuthenticationError,
        404: NotFoundError,
        422: ValidationError,
        429: RateLimitError,
        500: ServerError,
        503: ServerError,
        409: APIError,
    }
    for status, cls in expected.items():
        error = error_from_response(_response(status, '{"message": "x"}'))
        assert type(error) is cls, status
        assert error.status == status
        assert error.method == "POST"


def test_long_html_is_truncated_and_request_id_optional() -> None:
    page = "<html><body>" + "<p>word</p>" * 200 + "</body></html>"
    error = error_from_response(_response(500, page, {"content-type": "text/html"}))
    assert len(error.message) <= 200
    assert error.message.endswith("…")
    assert error.request_id is None
    assert "request id" not in str(error)
    assert str(error).startswith("500 Internal Server Error from POST /v1/dispatches")


def test_request_id_from_json_body_and_secret_redaction() -> None:
    body = '{"message": "token s3cr3t-token-value rejected", "request_id": "rq-9"}'
    error = error_from_response(_response(401, body), secrets=["s3cr3t-token-value"])
    assert error.request_id == "rq-9"
    assert "s3cr3t" not in str(error)
    assert "[redacted]" in str(error)


def test_with_prefix_keeps_type_and_fields() -> None:
    error = error_from_response(_response(422, '{"message": "bad sku"}', {"x-request-id": "r1"}))
    wrapped = error.with_prefix("chunk 2 of 3", failed_skus=["A"])
    assert type(wrapped) is ValidationError
    assert wrapped.failed_skus == ["A"]
    assert (
        str(wrapped)
        == "422 Unprocessable Entity from POST /v1/dispatches?limit=5: chunk 2 of 3: bad sku (request id r1)"
    )
    assert error.message == "bad sku"


def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert parse_retry_after("100000") == 900.0  # capped


def test_budget_rates_spacing_and_margin() -> None:
    spacing, budget = budget_rates(60, 60.0)
    assert (spacing.limit, spacing.interval) == (1, 1000)
    assert (budget.limit, budget.interval) == (60, 61200)
    spacing, budget = budget_rates(10, 1.0)
    assert (spacing.limit, spacing.interval, budget.limit, budget.interval) == (1, 100, 10, 1100)
    (only,) = budget_rates(1, 60.0)
    assert (only.limit, only.interval) == (1, 61200)
    with pytest.raises(ValueError, match="at least 1"):
        budget_rates(0, 60.0)
