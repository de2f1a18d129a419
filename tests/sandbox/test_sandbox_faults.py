"""Injected faults: each kind, consumed by the next N matching API requests, counted in stats."""

from __future__ import annotations

import httpx
import pytest
from sandbox_test_helpers import fetch_token, plain

from orderspace_sandbox import SandboxConfig


def test_500_html(sandbox, api):
    sandbox.faults.inject("500_html")
    response = api.get("orders")
    assert response.status_code == 500
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.lstrip().startswith("<!DOCTYPE html>")
    assert api.get("orders").status_code == 200  # consumed


def test_502_html(sandbox, api):
    sandbox.faults.inject("502_html")
    response = api.get("orders")
    assert response.status_code == 502
    assert "502 Bad Gateway" in response.text


def test_503_empty(sandbox, api):
    sandbox.faults.inject("503_empty")
    response = api.get("orders")
    assert response.status_code == 503
    assert response.content == b""
    assert response.headers["X-Request-Id"]


def test_500_json(sandbox, api):
    sandbox.faults.inject("500_json")
    response = api.get("orders")
    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_429_fault_has_retry_after_and_counts_as_rate_limited(sandbox, api):
    sandbox.faults.inject("429")
    response = api.get("orders")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == str(int(sandbox.config.rate_window))
    assert sandbox.stats()["rate_limited"] == 1


def test_401_empty(sandbox, api):
    sandbox.faults.inject("401_empty")
    response = api.get("orders")
    assert response.status_code == 401
    assert response.content == b""


def test_400_html(sandbox, api):
    sandbox.faults.inject("400_html")
    response = api.get("orders")
    assert response.status_code == 400
    assert "400 Bad Request" in response.text


def test_drop_closes_the_connection_without_a_response(sandbox, api):
    sandbox.faults.inject("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("orders")
    assert api.get("orders").status_code == 200  # a new connection works
    assert sandbox.stats()["faults_served"] == 1


def test_slow_waits_then_answers_normally(sandbox, api):
    sandbox.faults.inject("slow", delay=0.5)
    with pytest.raises(httpx.ReadTimeout):
        api.get("orders", timeout=0.1)
    sandbox.faults.inject("slow", delay=0.05)
    response = api.get("orders")
    assert response.status_code == 200
    assert response.json()["orders"]


def test_count_and_path_prefix(sandbox, api):
    sandbox.faults.inject("500_json", count=2, path_prefix="/v1/orders")
    assert api.get("customers").status_code == 200  # not matching
    assert api.get("orders").status_code == 500
    assert api.get("orders/or_whatever").status_code == 500
    assert api.get("orders").status_code == 200
    stats = sandbox.stats()
    assert stats["faults_served"] == 2
    assert stats["requests"] == 4  # faulted requests count
    assert stats["by_path"]["GET /v1/orders/{id}"] == 1


def test_faults_can_target_the_token_endpoint(sandbox):
    sandbox.faults.inject("503_empty", path_prefix="/oauth/token")
    form = {
        "client_id": "sandbox-client",
        "client_secret": "sandbox-secret",
        "grant_type": "client_credentials",
    }
    assert plain.post(sandbox.token_url, data=form).status_code == 503
    assert fetch_token(sandbox)


def test_faults_without_a_prefix_leave_the_token_endpoint_alone(sandbox, api):
    sandbox.faults.inject("500_html")
    assert fetch_token(sandbox)
    assert api.get("orders").status_code == 500


def test_faults_come_before_auth(sandbox):
    sandbox.faults.inject("502_html")
    assert plain.get(f"{sandbox.api_url}/orders").status_code == 502


def test_startup_faults_from_the_config(sandbox_factory, api_for):
    server = sandbox_factory(faults=["500_html:2", "drop"])
    api = api_for(server)
    assert [api.get("tax_rates").status_code for _ in range(2)] == [500, 500]
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("tax_rates")
    assert api.get("tax_rates").status_code == 200


def test_bad_fault_requests_are_refused_clearly(sandbox):
    with pytest.raises(ValueError, match="unknown fault kind 'boom'"):
        sandbox.faults.inject("boom")
    with pytest.raises(ValueError, match="count"):
        sandbox.faults.inject("drop", count=0)
    with pytest.raises(ValueError, match="unknown fault kind 'nope'"):
        SandboxConfig(faults=["nope:2"])


def test_latency_delays_every_api_request(sandbox_factory, api_for):
    server = sandbox_factory(latency=0.5)
    api = api_for(server)  # the token endpoint is not delayed
    with pytest.raises(httpx.ReadTimeout):
        api.get("tax_rates", timeout=0.1)
