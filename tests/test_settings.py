"""The configuration model: one declaration of every variable, one emptiness rule, one error type, and the
same one-line message from the CLI and from Dagster loading the code location."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from orderspace_pipelines.defs.resources import LakeResource, OrderspaceResource
from orderspace_pipelines.settings import ConfigurationError, OrderspaceSettings, env_name, load_settings

ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = {"ORDERSPACE_CLIENT_ID": "id", "ORDERSPACE_CLIENT_SECRET": "s3cret-value"}


def _readme_variables() -> set[str]:
    table = (ROOT / "README.md").read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(ORDERSPACE_[A-Z_]+)`", table, flags=re.MULTILINE))


def test_the_model_declares_every_variable_of_the_readme_table() -> None:
    declared = {env_name(name) for name in OrderspaceSettings.model_fields}
    documented = _readme_variables()
    assert len(documented) >= 13
    assert declared == documented


def test_defaults() -> None:
    settings = OrderspaceSettings.read({})
    assert settings.client_id is None and settings.client_secret is None
    assert settings.api_url == "https://api.orderspace.com/v1"
    assert settings.requests_per_minute == 60 and settings.rate_window_seconds == 60.0
    assert settings.data_dir == Path("./data").resolve()
    assert settings.start_date == date(2015, 1, 1) and settings.lookback_days == 7
    assert settings.warehouse_stable_seconds == 5.0
    assert settings.throttle_db is None and settings.token_cache is None and settings.database_url is None


def test_blank_is_unset_everywhere() -> None:
    blank = {name: "  " for name in _readme_variables()}
    assert OrderspaceSettings.read(blank) == OrderspaceSettings.read({})
    with pytest.raises(ConfigurationError, match=r"^ORDERSPACE_CLIENT_ID is not set"):
        OrderspaceSettings.from_env(blank)
    with pytest.raises(ConfigurationError, match=r"^ORDERSPACE_CLIENT_SECRET is not set"):
        OrderspaceSettings(client_id="id", client_secret="").credentials()


def test_values_are_stripped_and_parsed() -> None:
    settings = OrderspaceSettings.from_env(
        CREDENTIALS
        | {
            "ORDERSPACE_CLIENT_ID": " id ",
            "ORDERSPACE_START_DATE": " 2024-02-29 ",
            "ORDERSPACE_REQUESTS_PER_MINUTE": "120",
            "ORDERSPACE_LOOKBACK_DAYS": "0",
            "ORDERSPACE_THROTTLE_DB": "/tmp/x.sqlite",
            "ORDERSPACE_DATABASE_URL": "postgresql://u:pw@db/orderspace",
        }
    )
    assert settings.credentials() == ("id", "s3cret-value")
    assert settings.start_date == date(2024, 2, 29)
    assert settings.requests_per_minute == 120 and settings.lookback_days == 0
    assert settings.throttle_db == Path("/tmp/x.sqlite")
    assert settings.database_url is not None and "pw" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ORDERSPACE_START_DATE", "2024-13-01", "must be a date as YYYY-MM-DD, got '2024-13-01'"),
        ("ORDERSPACE_REQUESTS_PER_MINUTE", "sixty", "must be a number, got 'sixty'"),
        ("ORDERSPACE_REQUESTS_PER_MINUTE", "1.5", "must be a whole number, got '1.5'"),
        ("ORDERSPACE_REQUESTS_PER_MINUTE", "-3", "must be greater than zero, got '-3'"),
        ("ORDERSPACE_RATE_WINDOW_SECONDS", "0", "must be greater than zero, got '0'"),
        ("ORDERSPACE_RATE_WINDOW_SECONDS", "inf", "must be a number, got 'inf'"),
        ("ORDERSPACE_LOOKBACK_DAYS", "2.5", "must be a whole number of days, got '2.5'"),
        ("ORDERSPACE_WAREHOUSE_STABLE_SECONDS", "soon", "must be a number of seconds, got 'soon'"),
        ("ORDERSPACE_API_URL", "api.orderspace.com", "must be an http(s) URL, got 'api.orderspace.com'"),
        ("ORDERSPACE_TOKEN_URL", "ftp://x/token", "must be an http(s) URL, got 'ftp://x/token'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        OrderspaceSettings.read({name: value})
    assert str(raised.value) == f"{name} {message}"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_the_secret_is_never_shown() -> None:
    settings = OrderspaceSettings(client_id="id", client_secret="s3cret-value")
    assert "s3cret-value" not in repr(settings) + str(settings) + settings.model_dump_json()
    with pytest.raises(ConfigurationError) as raised:
        OrderspaceSettings(client_id="id", client_secret=["s3cret-value"])
    assert str(raised.value).startswith("ORDERSPACE_CLIENT_SECRET: ")
    assert "s3cret-value" not in str(raised.value)


def test_a_mapping_is_read_alone_and_overrides_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDERSPACE_LOOKBACK_DAYS", "3")
    monkeypatch.setenv("ORDERSPACE_START_DATE", "2020-01-01")
    assert OrderspaceSettings.read({}).lookback_days == 7  # the process environment is not consulted
    assert load_settings().lookback_days == 3
    assert OrderspaceSettings.read(None, start_date="2021-06-01").start_date == date(2021, 6, 1)
    assert OrderspaceSettings(lookback_days=1).lookback_days == 1


def test_resources_read_the_model_with_their_fields_winning(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("ORDERSPACE_CLIENT_ID", "from-env")
    monkeypatch.setenv("ORDERSPACE_CLIENT_SECRET", "env-secret")
    monkeypatch.setenv("ORDERSPACE_REQUESTS_PER_MINUTE", "30")
    monkeypatch.setenv("ORDERSPACE_DATA_DIR", str(tmp_path))
    settings = OrderspaceResource(client_id="literal", rate_window_seconds=2.0).settings()
    assert settings.credentials() == ("literal", "env-secret")
    assert (settings.requests_per_minute, settings.rate_window_seconds) == (30, 2.0)
    assert LakeResource().root == tmp_path
    assert LakeResource(data_dir=" ").root == Path("./data").resolve()  # blank is unset: the default
    assert LakeResource(data_dir=str(tmp_path / "x")).root == tmp_path / "x"
    monkeypatch.setenv("ORDERSPACE_RATE_WINDOW_SECONDS", "never")
    with pytest.raises(ConfigurationError, match=r"^ORDERSPACE_RATE_WINDOW_SECONDS must be a number"):
        OrderspaceResource().settings()


# -- the same one line from the CLI and from Dagster loading the code location ------------------------------


def _env(**variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERSPACE_")}
    return env | CREDENTIALS | variables


@pytest.mark.parametrize(
    ("name", "value", "line"),
    [
        (
            "ORDERSPACE_START_DATE",
            "2024-13-01",
            "ORDERSPACE_START_DATE must be a date as YYYY-MM-DD, got '2024-13-01'",
        ),
        (
            "ORDERSPACE_RATE_WINDOW_SECONDS",
            "fast",
            "ORDERSPACE_RATE_WINDOW_SECONDS must be a number, got 'fast'",
        ),
    ],
)
def test_cli_and_code_location_give_the_same_one_line(
    name: str, value: str, line: str, tmp_path: Path
) -> None:
    env = _env(**{name: value, "ORDERSPACE_DATA_DIR": str(tmp_path / "data")}) | {
        "DAGSTER_HOME": str(tmp_path)
    }
    cli = subprocess.run(
        [sys.executable, "-m", "orderspace_pipelines.cli", "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert cli.returncode == 2
    assert cli.stderr.strip() == f"orderspace-pipelines: {line}"
    assert cli.stdout == ""

    dagster = Path(sys.executable).with_name("dagster")
    load = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "orderspace_pipelines.definitions"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    output = load.stdout + load.stderr
    assert load.returncode != 0
    assert f"ConfigurationError: {line}\n" in output
    # Dagster prints the failing module's frame (definitions.py, the line that raises); nothing deeper of
    # ours, no chained exception, no pydantic.
    assert "Traceback" not in output
    assert "settings.py" not in output and "pydantic" not in output and "partitions.py" not in output
    assert "The above exception" not in output
