"""The retry decisions of `ThrottledRetryTransport` and the reading of a token response: pure rules.

The loop that acts on them (throttle, sleeps, real sockets) is exercised end to end against the sandbox in
`test_client_sandbox.py` and `test_client_throttle.py`.
"""

from __future__ import annotations

import httpx
import pytest

from orderspace_pipelines.client.auth import DEFAULT_TOKEN_LIFETIME, token_from_body
from orderspace_pipelines.client.errors import ResponseFormatError
from orderspace_pipelines.client.transport import (
    GiveUp,
    Retry,
    classify_error,
    classify_response,
    may_repeat,
)


def on_response(
    status: int, retry_after: str | None = None, *, attempt: int = 0, repeatable: bool = True
) -> Retry | None:
    """`classify_response` with 5 retries allowed, a 60 s minimum 429 wait and a 0.25 s backoff."""
    return classify_response(
        status,
        retry_after,
        attempt=attempt,
        max_retries=5,
        repeatable=repeatable,
        min_429_wait=60.0,
        backoff=0.25,
    )


def on_error(error: httpx.TransportError, *, attempt: int = 0, repeatable: bool = True) -> Retry | GiveUp:
    """`classify_error` with 5 retries allowed and a 0.25 s backoff."""
    return classify_error(error, attempt=attempt, max_retries=5, repeatable=repeatable, backoff=0.25)


def test_only_idempotent_methods_may_repeat_unless_told() -> None:
    assert may_repeat("get") and may_repeat("PUT") and may_repeat("DELETE")
    assert not may_repeat("POST") and not may_repeat("PATCH")
    assert may_repeat("POST", retry_unsafe_methods=True)


@pytest.mark.parametrize("status", [200, 201, 204, 400, 401, 404, 422])
def test_success_and_client_errors_are_returned_as_they_are(status: int) -> None:
    assert on_response(status, None) is None


def test_429_waits_the_longer_of_retry_after_and_the_minimum_and_pauses_everyone() -> None:
    assert on_response(429, "5") == Retry(
        60.0, "429 Too Many Requests (Retry-After 5.0); waiting 60.0 s", pause_all=True
    )
    longer = on_response(429, "90")
    assert isinstance(longer, Retry) and longer.wait == 90.0 and longer.pause_all
    unreadable = on_response(429, "soon")
    assert isinstance(unreadable, Retry) and unreadable.wait == 60.0
    assert "Retry-After None" in unreadable.reason


def test_429_is_retried_even_for_a_post_but_not_past_the_limit() -> None:
    assert isinstance(on_response(429, None, repeatable=False), Retry)
    assert on_response(429, None, attempt=5) is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_retryable_5xx_backs_off_for_repeatable_requests_only(status: int) -> None:
    assert on_response(status, None) == Retry(0.25, f"HTTP {status}")
    assert on_response(status, None, repeatable=False) is None
    assert on_response(status, None, attempt=5) is None


def test_other_5xx_is_returned() -> None:
    assert on_response(501, None) is None


def test_a_connection_that_never_reached_the_server_is_retried_for_any_method() -> None:
    error = httpx.ConnectError("refused")
    assert on_error(error, repeatable=False) == Retry(0.25, "ConnectError")
    give_up = on_error(error, repeatable=False, attempt=5)
    assert give_up == GiveUp("ConnectError after 6 attempt(s)", maybe_processed=False)


def test_a_read_timeout_is_retried_when_repeatable_and_flagged_maybe_processed_when_not() -> None:
    error = httpx.ReadTimeout("slow")
    assert on_error(error) == Retry(0.25, "ReadTimeout")
    give_up = on_error(error, repeatable=False)
    assert isinstance(give_up, GiveUp) and give_up.maybe_processed
    assert "may have been processed" in give_up.detail
    exhausted = on_error(error, attempt=5)
    assert exhausted == GiveUp("ReadTimeout after 6 attempt(s)", maybe_processed=False)


def test_an_unknown_transport_error_is_not_retried() -> None:
    error = httpx.UnsupportedProtocol("gopher")
    assert on_error(error) == GiveUp("UnsupportedProtocol after 1 attempt(s)", False)
    unsafe = on_error(error, repeatable=False)
    assert isinstance(unsafe, GiveUp) and unsafe.maybe_processed


def test_token_from_body_reads_the_token_and_its_lifetime() -> None:
    token = token_from_body({"access_token": " tok ", "expires_in": "900"}, "POST /oauth/token", now=100.0)
    assert (token.value, token.obtained_at, token.lifetime) == ("tok", 100.0, 900.0)
    for unusable in (None, "x", 0, -5):
        assert token_from_body({"access_token": "t", "expires_in": unusable}, "w").lifetime == (
            DEFAULT_TOKEN_LIFETIME
        )


@pytest.mark.parametrize("body", [None, [], {"token": "x"}, {"access_token": "  "}, {"access_token": 5}])
def test_token_from_body_without_a_token_names_what_it_held(body: object) -> None:
    with pytest.raises(ResponseFormatError, match=r"POST /oauth/token\) has no access_token; it held"):
        token_from_body(body, "POST /oauth/token")
