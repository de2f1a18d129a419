"""The `deploy` marker: the multi-host deployment test (`pytest -m deploy` selects it; `make test` runs
it)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deploy: the deployment across hosts (separate Dagster processes)")
