"""The analysis notebook runs top to bottom against a real pulled catalog."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from orderspace_pipelines.defs.sync import run_sync

from .conftest import resources_for

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "orderspace_analysis.ipynb"


def test_notebook_answers_its_questions_from_the_catalog(sandbox, orderspace_env) -> None:
    assert run_sync(resources=resources_for(orderspace_env)).success
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
    ]
    assert not [output for output in outputs if output.get("output_type") == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == 2  # the revenue chart and the stock cover chart
    text = "\n".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", "")) for output in outputs
    )
    assert "revenue" in text and "days_of_cover" in text and "best sellers have less than 30 days" in text
