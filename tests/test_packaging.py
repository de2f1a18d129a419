"""The product and its development tools are apart: what the product's wheel holds, who imports whom, and the
console script on an install without the development tools."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = REPO / "orderspace_pipelines"
SANDBOX = REPO / "devtools" / "orderspace_sandbox"
DEV_TOOLS = {"orderspace_sandbox", "orderspace_devtools"}

# The console script on a product-only install: `import orderspace_sandbox` (and `orderspace_devtools`)
# fails with ModuleNotFoundError, as it does where the `dev` extra was not installed.
WITHOUT_DEV_TOOLS = (
    "import sys; sys.modules.update(orderspace_sandbox=None, orderspace_devtools=None); "
    "from orderspace_pipelines.cli import main; sys.exit(main(sys.argv[1:]))"
)


def imports_of(package: Path) -> dict[str, set[str]]:
    """Every absolute module name each file of `package` imports (relative imports stay in the package)."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[str(path.relative_to(REPO))] = names
    return found


def top_level(names: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in names}


def test_the_product_imports_nothing_from_the_development_tools() -> None:
    found = imports_of(PRODUCT)
    assert "orderspace_pipelines/cli.py" in found  # the scan sees the product
    offenders = {path: top_level(names) & DEV_TOOLS for path, names in found.items()}
    assert {path: tools for path, tools in offenders.items() if tools} == {}


def test_the_sandbox_shares_nothing_with_the_product_but_the_api_shape() -> None:
    """Standard library only: no `orderspace_pipelines`, not even httpx."""
    found = imports_of(SANDBOX)
    assert "devtools/orderspace_sandbox/server.py" in found
    allowed = set(sys.stdlib_module_names) | {"orderspace_sandbox"}
    outside = {path: top_level(names) - allowed for path, names in found.items()}
    assert {path: names for path, names in outside.items() if names} == {}


def test_the_product_wheel_holds_the_product_only(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--quiet", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("orderspace_pipelines-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    assert {name.split("/")[0] for name in names} == {
        "orderspace_pipelines",
        wheel.name.split("-py3")[0] + ".dist-info",
    }
    assert "orderspace_pipelines/cli.py" in names
    assert "orderspace_pipelines/dagster_home/dagster.yaml" in names
    assert not [name for name in names if "sandbox" in name or "devtools" in name or "local_stack" in name]
    assert "orderspace-pipelines = orderspace_pipelines.cli:main" in entry_points
    assert "Requires-Python: <3.14,>=3.11" in metadata
    assert 'Requires-Dist: orderspace-devtools==0.1.0; extra == "dev"' in metadata


@pytest.mark.parametrize(
    "args", [["sandbox", "--port", "0"], ["demo", "--scale", "tiny"], ["dev", "--port", "0"]], ids=str
)
def test_without_the_development_tools_their_commands_say_how_to_install_them(
    args: list[str], tmp_path: Path
) -> None:
    env = os.environ | {"ORDERSPACE_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_DEV_TOOLS, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"orderspace-pipelines {args[0]}: the development tools are not installed")
    assert "make install" in line and "pip install -e ./devtools -e '.[dev]'" in line
    assert not (tmp_path / "data").exists() and not (tmp_path / "home").exists()  # nothing started


def test_without_the_development_tools_the_product_commands_still_run(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERSPACE_")}
    env["ORDERSPACE_DATA_DIR"] = str(tmp_path / "data")
    sync = subprocess.run(
        [sys.executable, "-c", WITHOUT_DEV_TOOLS, "sync"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sync.returncode == 2
    (line,) = sync.stderr.splitlines()  # the settings' own message, not the development tools'
    assert line.startswith("orderspace-pipelines: ORDERSPACE_CLIENT_ID is not set")
    push = subprocess.run(
        [sys.executable, "-c", WITHOUT_DEV_TOOLS, "push", str(tmp_path / "missing.csv")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert push.returncode == 2
    assert push.stderr.strip() == f"orderspace-pipelines push: no such file: {tmp_path / 'missing.csv'}"
