"""Every item under "What to try next" comes with its code; nbval runs that code after each notebook's own
cells, in the same kernel, as a student would paste it (conftest.py), and no cell may fail."""
from pathlib import Path

import nbformat
import pytest
from try_next import ITEM, snippets, what_to_try_next

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_snippets_are_found_as_fenced_python_blocks():
    text = "## What to try next\n\n1. One.\n   ```python\n   x = 1\n   print(x)\n   ```\n2. Two.\n"
    assert snippets(text) == ["x = 1\nprint(x)\n"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_item_of_what_to_try_next_comes_with_its_code(path):
    """nbval runs the code after the notebook's own cells (conftest.py); here, that none is missing."""
    text = what_to_try_next(nbformat.read(path, as_version=4))
    assert len(snippets(text)) == len(ITEM.findall(text)) > 0
