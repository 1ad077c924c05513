"""The code of each item under a notebook's last heading, "What to try next": fenced python blocks."""
import re
import textwrap

SNIPPET = re.compile(r"```python\n(.*?)```", re.DOTALL)
ITEM = re.compile(r"^\d+\. ", re.MULTILINE)


def what_to_try_next(notebook) -> str:
    """The text of the notebook's last cell, which must be its What to try next."""
    cell = notebook.cells[-1]
    assert cell.cell_type == "markdown" and cell.source.startswith("## What to try next")
    return cell.source


def snippets(text: str) -> list[str]:
    return [textwrap.dedent(block) for block in SNIPPET.findall(text)]
