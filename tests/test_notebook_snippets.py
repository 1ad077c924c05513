"""Every code snippet under "What to try next" works: each notebook runs in smoke mode with its snippets
appended as new cells, as a student would paste them, and no cell may fail."""
import re
import textwrap
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
SNIPPET = re.compile(r"```python\n(.*?)```", re.DOTALL)
ITEM = re.compile(r"^\d+\. ", re.MULTILINE)


def what_to_try_next(notebook) -> str:
    cell = notebook.cells[-1]
    assert cell.cell_type == "markdown" and cell.source.startswith("## What to try next")
    return cell.source


def snippets(text: str) -> list[str]:
    return [textwrap.dedent(block) for block in SNIPPET.findall(text)]


def test_snippets_are_found_as_fenced_python_blocks():
    text = "## What to try next\n\n1. One.\n   ```python\n   x = 1\n   print(x)\n   ```\n2. Two.\n"
    assert snippets(text) == ["x = 1\nprint(x)\n"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_what_to_try_next_snippets_run(path):
    notebook = nbformat.read(path, as_version=4)
    text = what_to_try_next(notebook)
    code = snippets(text)
    assert len(code) == len(ITEM.findall(text)), "every item of What to try next comes with its code"
    notebook.cells += [nbformat.v4.new_code_cell(source) for source in code]
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [cell.outputs for cell in notebook.cells[-len(code):]]
    assert all(not any(o.get("output_type") == "error" for o in out) for out in outputs)
