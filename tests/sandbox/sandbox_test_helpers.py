"""Plain-httpx helpers for the sandbox tests (never the project's client)."""

from __future__ import annotations

import httpx

from orderspace_sandbox import SandboxServer

# One shared client for one-off calls: each new httpx.Client builds an SSL context (~60 ms), and the sandbox
# is plain HTTP, so verification is off.
plain = httpx.Client(timeout=10, verify=False)


def fetch_token(server: SandboxServer) -> str:
    response = plain.post(
        server.token_url,
        data={
            "client_id": server.config.client_id,
            "client_secret": server.config.client_secret,
            "grant_type": "client_credentials",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def api_client(server: SandboxServer) -> httpx.Client:
    """An httpx client on the sandbox's /v1 with a fresh Bearer token."""
    return httpx.Client(
        base_url=server.api_url + "/",
        headers={"Authorization": f"Bearer {fetch_token(server)}"},
        timeout=10,
        verify=False,
    )


def is_bare_400(response: httpx.Response) -> bool:
    """A 400 as the real API sends it (orderspace-ruby bad_request.http): text/html, empty body."""
    return (
        response.status_code == 400
        and response.content == b""
        and response.headers["content-type"].startswith("text/html")
    )


def walk(client: httpx.Client, resource: str, **params: object) -> list[dict]:
    """Every record of a paginated list, following starting_after until the last page."""
    records: list[dict] = []
    query = dict(params)
    limit = int(query.setdefault("limit", 200))  # type: ignore[arg-type]
    for _ in range(10_000):
        response = client.get(resource, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        page = body[resource]
        records.extend(page)
        more = body["has_more"] if "has_more" in body else len(page) == limit
        if not more or not page:
            return records
        query["starting_after"] = page[-1]["sku"] if resource == "inventory_levels" else page[-1]["id"]
    raise AssertionError("pagination never ended")
