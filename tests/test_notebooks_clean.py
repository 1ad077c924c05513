"""Notebooks are source code: committed without outputs, execution counts or widget state."""
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_all_six_notebooks_exist():
    assert [p.name[:3] for p in NOTEBOOKS] == ["01_", "02_", "03_", "04_", "05_", "06_"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    notebook = json.loads(path.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] for c in code), "clear the outputs before committing"
    assert all(c["execution_count"] is None for c in code)
    assert "widgets" not in notebook["metadata"], "widget state is saved in the metadata"
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown" and "colab.research.google.com" in "".join(first["source"])
    assert all(words in "".join(first["source"]) for words in ("**Run time**", "smoke mode", "GPU")), \
        "the first cell states the notebook's measured run times"
    assert 'if "google.colab" in sys.modules' in "".join(code[0]["source"])
    assert "What to try next" in "".join(notebook["cells"][-1]["source"])
