"""The sliding rate window: 429 with Retry-After beyond the limit, recovery once the window has passed."""

from __future__ import annotations

import time

from sandbox_test_helpers import plain


def test_requests_beyond_the_limit_get_429_with_retry_after(sandbox_factory, api_for):
    server = sandbox_factory(rate_limit=5, rate_window=1.0)
    api = api_for(server)
    statuses = [api.get("tax_rates").status_code for _ in range(5)]
    assert statuses == [200] * 5
    limited = api.get("tax_rates")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "1"
    assert "Too many requests" in limited.json()["message"]
    assert limited.headers["X-Request-Id"]
    stats = server.stats()
    assert stats["rate_limited"] == 1
    assert stats["requests"] == 6  # the 429'd attempt counts, as on the real API
    assert stats["max_in_window"] == 6


def test_the_window_slides_and_requests_are_allowed_again(sandbox_factory, api_for):
    server = sandbox_factory(rate_limit=3, rate_window=0.5)
    api = api_for(server)
    assert [api.get("tax_rates").status_code for _ in range(4)] == [200, 200, 200, 429]
    time.sleep(0.55)
    assert api.get("tax_rates").status_code == 200


def test_retry_after_rounds_the_window_up(sandbox_factory, api_for):
    server = sandbox_factory(rate_limit=1, rate_window=1.2)
    api = api_for(server)
    api.get("tax_rates")
    assert api.get("tax_rates").headers["Retry-After"] == "2"


def test_token_and_control_endpoints_are_not_rate_limited_or_counted(sandbox_factory, api_for):
    server = sandbox_factory(rate_limit=2, rate_window=60.0)
    api = api_for(server)
    api.get("tax_rates")
    api.get("tax_rates")
    assert api.get("tax_rates").status_code == 429
    for _ in range(3):
        assert api_for(server).get("tax_rates").status_code == 429  # new tokens: fine; API: still limited
        assert plain.get(f"{server.base_url}/_sandbox/stats").status_code == 200
    stats = server.stats()
    assert stats["requests"] == 6
    assert stats["tokens_issued"] == 4


def test_max_in_window_shows_a_client_that_kept_within_budget(sandbox_factory, api_for):
    server = sandbox_factory(rate_limit=4, rate_window=0.4)
    api = api_for(server)
    for _ in range(3):
        for _ in range(4):
            assert api.get("tax_rates").status_code == 200
        time.sleep(0.45)
    stats = server.stats()
    assert stats["max_in_window"] == 4
    assert stats["rate_limited"] == 0
    server.reset_stats()
    assert server.stats()["max_in_window"] == 0
