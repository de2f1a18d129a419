"""Fixtures of the pull tests: Dagster resources pointing at the sandbox and a temporary data dir."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from orderspace_pipelines.client.client import MAX_PAGE_SIZE
from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource


def resources_for(env: dict[str, str], page_size: int = MAX_PAGE_SIZE) -> dict[str, object]:
    """The `orderspace` and `lake` resources for the environment `env` (e.g. the `orderspace_env` fixture);
    pages of the client's own (largest) size unless told otherwise."""
    return {
        "orderspace": OrderspaceResource(
            client_id=env["ORDERSPACE_CLIENT_ID"],
            client_secret=env["ORDERSPACE_CLIENT_SECRET"],
            api_url=env["ORDERSPACE_API_URL"],
            token_url=env["ORDERSPACE_TOKEN_URL"],
            requests_per_minute=int(env["ORDERSPACE_REQUESTS_PER_MINUTE"]),
            rate_window_seconds=float(env["ORDERSPACE_RATE_WINDOW_SECONDS"]),
            page_size=page_size,
        ),
        "lake": LakeResource(data_dir=env["ORDERSPACE_DATA_DIR"]),
    }


@pytest.fixture
def make_resources() -> Callable[..., dict[str, object]]:
    return resources_for
