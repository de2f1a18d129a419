"""Token endpoint, Bearer checks, expiry and revocation."""

from __future__ import annotations

import base64
import time

from sandbox_test_helpers import fetch_token, plain


def _form(server, **overrides):
    form = {
        "client_id": server.config.client_id,
        "client_secret": server.config.client_secret,
        "grant_type": "client_credentials",
    }
    form.update(overrides)
    return form


def test_token_has_the_documented_shape(sandbox):
    response = plain.post(sandbox.token_url, data=_form(sandbox))
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800
    assert body["scope"] == "read write"
    assert len(body["access_token"]) >= 32
    assert response.headers["X-Request-Id"]
    assert sandbox.stats()["tokens_issued"] == 1


def test_http_basic_credentials_are_accepted(sandbox):
    basic = base64.b64encode(f"{sandbox.config.client_id}:{sandbox.config.client_secret}".encode()).decode()
    response = plain.post(
        sandbox.token_url,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.status_code == 200
    token = response.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert plain.get(f"{sandbox.api_url}/tax_rates", headers=headers).status_code == 200


def test_wrong_credentials_get_invalid_client_and_no_secret_echo(sandbox):
    response = plain.post(sandbox.token_url, data=_form(sandbox, client_secret="not-the-secret"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "not-the-secret" not in response.text
    assert plain.post(sandbox.token_url, data=_form(sandbox, client_id="someone-else")).status_code == 401
    assert sandbox.stats()["tokens_issued"] == 0


def test_wrong_grant_type_is_a_400(sandbox):
    response = plain.post(sandbox.token_url, data=_form(sandbox, grant_type="password"))
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_missing_and_invalid_tokens_get_401(sandbox):
    missing = plain.get(f"{sandbox.api_url}/orders")
    assert missing.status_code == 401 and missing.content == b""
    assert 'error_description="The access token is invalid"' in missing.headers["www-authenticate"]
    invalid = plain.get(f"{sandbox.api_url}/orders", headers={"Authorization": "Bearer made-up"})
    assert invalid.status_code == 401 and invalid.content == b""
    assert 'error_description="The access token is invalid"' in invalid.headers["www-authenticate"]


def test_tokens_expire_after_their_lifetime(sandbox_factory):
    server = sandbox_factory(token_ttl=0.5)
    token = fetch_token(server)
    headers = {"Authorization": f"Bearer {token}"}
    assert plain.get(f"{server.api_url}/tax_rates", headers=headers).status_code == 200
    time.sleep(0.6)
    expired = plain.get(f"{server.api_url}/tax_rates", headers=headers)
    assert expired.status_code == 401 and expired.content == b""
    assert 'error_description="The access token expired"' in expired.headers["www-authenticate"]
    fresh = {"Authorization": f"Bearer {fetch_token(server)}"}
    assert plain.get(f"{server.api_url}/tax_rates", headers=fresh).status_code == 200


def test_expires_in_reports_a_fractional_lifetime_as_given(sandbox_factory):
    server = sandbox_factory(token_ttl=1.5)
    assert plain.post(server.token_url, data=_form(server)).json()["expires_in"] == 1.5


def test_revoked_tokens_stop_working(sandbox):
    headers = {"Authorization": f"Bearer {fetch_token(sandbox)}"}
    assert plain.get(f"{sandbox.api_url}/tax_rates", headers=headers).status_code == 200
    sandbox.revoke_tokens()
    assert plain.get(f"{sandbox.api_url}/tax_rates", headers=headers).status_code == 401


def test_the_secret_never_appears_in_stats_repr_or_records(sandbox, api):
    api.get("orders")
    secret = sandbox.config.client_secret
    assert secret not in repr(sandbox.config)
    assert secret not in str(sandbox.stats())
    assert secret not in plain.get(f"{sandbox.base_url}/_sandbox/stats").text
