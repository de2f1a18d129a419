"""The Dagster resources, configured from the contract's environment variables, against the sandbox."""

import dagster as dg
import pytest

from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
from orderspace_pipelines.settings import ConfigurationError, OrderspaceSettings
from orderspace_sandbox import SandboxServer


@dg.asset
def customer_ids(context: dg.AssetExecutionContext, orderspace: OrderspaceResource) -> list[str]:
    with orderspace.get_client() as client:
        ids = [customer["id"] for customer in client.list_customers()]
        context.add_output_metadata({"api_requests": client.stats.requests})
    return ids


def test_resource_from_env_lists_the_sandbox_customers(orderspace_env, sandbox: SandboxServer) -> None:
    result = dg.materialize([customer_ids], resources={"orderspace": OrderspaceResource.from_env()})
    assert result.success
    assert result.output_for_node("customer_ids") == [c["id"] for c in sandbox.store.all("customers")]
    assert str(LakeResource.from_env().root) == orderspace_env["ORDERSPACE_DATA_DIR"]


def test_missing_credential_is_named_at_run_time(orderspace_env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORDERSPACE_CLIENT_SECRET")
    with pytest.raises(dg.DagsterInvalidConfigError, match="ORDERSPACE_CLIENT_SECRET"):
        dg.materialize([customer_ids], resources={"orderspace": OrderspaceResource.from_env()})


def test_blank_credential_is_named_and_secret_never_shown(sandbox: SandboxServer) -> None:
    resource = OrderspaceResource(client_id=" ", client_secret="s3cret-value", api_url=sandbox.api_url)
    with pytest.raises(ConfigurationError, match="ORDERSPACE_CLIENT_ID is not set") as raised:
        resource.get_client()
    assert "s3cret-value" not in str(raised.value)
    settings = OrderspaceSettings(client_id="id", client_secret="s3cret-value")
    assert "s3cret-value" not in repr(settings)


def test_settings_from_env_names_each_problem() -> None:
    with pytest.raises(ConfigurationError, match="ORDERSPACE_CLIENT_ID is not set"):
        OrderspaceSettings.from_env({})
    with pytest.raises(ConfigurationError, match="ORDERSPACE_CLIENT_SECRET is not set"):
        OrderspaceSettings.from_env({"ORDERSPACE_CLIENT_ID": "x"})
    base = {"ORDERSPACE_CLIENT_ID": "x", "ORDERSPACE_CLIENT_SECRET": "y"}
    with pytest.raises(ConfigurationError, match="greater than zero"):
        OrderspaceSettings.from_env(base | {"ORDERSPACE_REQUESTS_PER_MINUTE": "0"})
    with pytest.raises(ConfigurationError, match="whole number"):
        OrderspaceSettings.from_env(base | {"ORDERSPACE_REQUESTS_PER_MINUTE": "1.5"})
    settings = OrderspaceSettings.from_env(base)
    assert settings.api_url == "https://api.orderspace.com/v1"
    assert settings.token_url == "https://identity.orderspace.com/oauth/token"
    assert settings.requests_per_minute == 60


def test_extension_variables_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from orderspace_pipelines.defs.partitions import lookback_days
    from orderspace_pipelines.defs.sensors import stable_seconds_from_env

    monkeypatch.setenv("ORDERSPACE_LOOKBACK_DAYS", "two")
    with pytest.raises(ConfigurationError, match="ORDERSPACE_LOOKBACK_DAYS must be a whole number of days"):
        lookback_days()
    monkeypatch.setenv("ORDERSPACE_LOOKBACK_DAYS", "3")
    assert lookback_days() == 3
    monkeypatch.setenv("ORDERSPACE_WAREHOUSE_STABLE_SECONDS", "-1")
    with pytest.raises(ConfigurationError, match="ORDERSPACE_WAREHOUSE_STABLE_SECONDS must be zero or more"):
        stable_seconds_from_env()
    monkeypatch.delenv("ORDERSPACE_WAREHOUSE_STABLE_SECONDS")
    assert stable_seconds_from_env() == 5.0
