"""The notebooks show the package's own code, read from the package when the cell runs."""
import inspect
import json
import textwrap
from pathlib import Path

import pytest

from cifar_resnet.model import BasicBlock
from cifar_resnet.show import show_source
from cifar_resnet.schedule import lr_at

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_source_is_the_packages_own_highlighted_with_its_place():
    shown = show_source(BasicBlock.forward)
    assert shown.text == textwrap.dedent(inspect.getsource(BasicBlock.forward)).rstrip() + "\n"
    assert shown.where.startswith("cifar_resnet/model.py, line ") and shown.where.endswith("BasicBlock.forward")
    assert "self.shortcut(self.pool(x))" in shown.text and "<span" in shown._repr_html_()  # highlighted
    assert repr(show_source(lr_at)).startswith("# cifar_resnet/schedule.py, line ")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_shows_package_code(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert any("show_source(" in "".join(c["source"]) for c in cells)
