"""Client-credentials auth against the sandbox's token endpoint: caching, renewal, 401 recovery, secrets."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from orderspace_pipelines.client import AuthenticationError, OrderspaceClient
from orderspace_pipelines.settings import OrderspaceSettings


def test_token_is_fetched_once_and_reused(sandbox, make_client) -> None:
    client = make_client(sandbox)
    list(client.list_orders(page_size=30))
    list(client.list_customers())
    assert sandbox.stats()["tokens_issued"] == 1
    assert "401" not in sandbox.stats()["by_status"]


def test_revoked_token_mid_pagination_is_renewed_and_the_request_retried(sandbox, make_client) -> None:
    client = make_client(sandbox)
    pages = client.iter_pages("orders", page_size=20)
    records = list(next(pages).records)
    first_token = client.auth.token()
    sandbox.revoke_tokens()
    for page in pages:
        records.extend(page.records)
    assert records == sandbox.store.all("orders")
    stats = sandbox.stats()
    assert stats["tokens_issued"] == 2
    assert stats["by_status"]["401"] == 1
    # 8 pages, plus the one request that was retried with the new token.
    assert stats["by_path"]["GET /v1/orders"] == 9
    assert client.auth.token() != first_token


def test_token_renewed_before_it_expires(sandbox_factory, make_client) -> None:
    server = sandbox_factory(token_ttl=1.0)  # renewal margin: 10% of the lifetime = 0.1 s
    client = make_client(server)
    list(client.list_tax_rates())
    time.sleep(0.95)  # inside the margin: still valid on the server, but due for renewal
    list(client.list_tax_rates())
    stats = server.stats()
    assert stats["tokens_issued"] == 2
    assert "401" not in stats["by_status"], "the client renewed before the server saw an expired token"


def test_expired_token_mid_pagination_recovers(sandbox_factory, make_client, monkeypatch) -> None:
    """A token that expires between pages (the client thinks it is still good) is renewed on the 401."""
    server = sandbox_factory(token_ttl=0.5)
    client = make_client(server)
    # Make the client believe tokens live an hour, so only the server's 401 can trigger renewal.
    original = client.auth._fetch_token

    def long_lived():
        token = original()
        return type(token)(value=token.value, obtained_at=token.obtained_at, lifetime=3600.0)

    monkeypatch.setattr(client.auth, "_fetch_token", long_lived)
    records = []
    for page in client.iter_pages("customers", page_size=4):
        records.extend(page.records)
        time.sleep(0.6)
    assert records == server.store.all("customers")
    assert server.stats()["by_status"]["401"] >= 1
    assert server.stats()["tokens_issued"] == 1 + server.stats()["by_status"]["401"]


def test_empty_401_is_retried_once_with_a_new_token(sandbox, make_client) -> None:
    client = make_client(sandbox)
    sandbox.faults.inject("401_empty", path_prefix="/v1/products")
    assert list(client.list_products()) == sandbox.store.all("products")
    assert sandbox.stats()["tokens_issued"] == 2

    sandbox.faults.inject("401_empty", count=2, path_prefix="/v1/products")
    with pytest.raises(AuthenticationError) as caught:
        list(client.list_products())
    assert str(caught.value).startswith(
        "401 Unauthorized from GET /v1/products?limit=200: (empty response body)"
    )
    assert caught.value.request_id


def test_bad_credentials_name_the_variables(sandbox, throttle_db) -> None:
    settings = OrderspaceSettings(
        client_id=sandbox.config.client_id,
        client_secret="not-the-secret",
        api_url=sandbox.api_url,
        token_url=sandbox.token_url,
    )
    with (
        OrderspaceClient(settings, throttle_db=str(throttle_db)) as client,
        pytest.raises(AuthenticationError) as caught,
    ):
        list(client.list_customers())
    text = str(caught.value)
    assert text.startswith("401 Unauthorized from POST /oauth/token: Client authentication failed")
    assert "ORDERSPACE_CLIENT_ID" in text and "ORDERSPACE_CLIENT_SECRET" in text
    assert "not-the-secret" not in text
    assert sandbox.stats()["requests"] == 0, "no API request is sent without a token"


def test_token_endpoint_faults_are_retried(sandbox, make_client) -> None:
    client = make_client(sandbox)
    sandbox.faults.inject("502_html", count=2, path_prefix="/oauth/token")
    assert list(client.list_tax_rates()) == sandbox.store.all("tax_rates")
    assert sandbox.stats()["tokens_issued"] == 1


def test_concurrent_threads_share_one_token(sandbox, make_client) -> None:
    client = make_client(sandbox)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            assert list(client.list_customers(page_size=5)) == sandbox.store.all("customers")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sandbox.stats()["tokens_issued"] == 1


def test_secrets_never_appear_in_logs_reprs_or_errors(sandbox, make_client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "orderspace_pipelines", "pyrate_limiter"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    secret = sandbox.config.client_secret
    client = make_client(sandbox, max_retries=1)
    tokens: set[str] = set()

    list(client.list_orders(page_size=50))
    tokens.add(client.auth.token())
    sandbox.revoke_tokens()
    sandbox.faults.inject("500_html", path_prefix="/v1/customers")
    list(client.list_customers())
    tokens.add(client.auth.token())
    sandbox.faults.inject("401_empty", count=2, path_prefix="/v1/customers")
    with pytest.raises(AuthenticationError) as caught:
        list(client.list_customers())
    tokens.add(client.auth.token())
    assert len(tokens) == 3
    assert any(r.name.startswith("httpx") or r.name.startswith("httpcore") for r in caplog.records)
    assert any(r.name == "orderspace_pipelines.client" for r in caplog.records)

    texts = [caplog.text, repr(client), repr(client.auth), repr(client.settings), str(caught.value)]
    texts.append(repr(caught.value))
    for text in texts:
        assert secret not in text
        for token in tokens:
            assert token not in text
