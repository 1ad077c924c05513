"""Tests and the notebooks that nbval executes run in smoke mode unless told otherwise. nbval runs each course
notebook, then, in the same kernel, the code of every item of its What to try next, as a student would paste it."""
import os
from collections import defaultdict

import nbformat
import pytest
from nbval.plugin import IPyNbCell, IPyNbFile

from tests.try_next import snippets, what_to_try_next

os.environ.setdefault("CIFAR_RESNET_SMOKE", "1")


class NotebookAndWhatToTryNext(IPyNbFile):
    """nbval's notebook, its cells followed by one cell per item of What to try next."""

    def collect(self):
        yield from super().collect()
        cells = len([cell for cell in self.nb.cells if cell.cell_type == "code"])
        for number, source in enumerate(snippets(what_to_try_next(self.nb)), 1):
            yield IPyNbCell.from_parent(self, name=f"What to try next {number}", cell_num=cells + number - 1,
                                        cell=nbformat.v4.new_code_cell(source), options=defaultdict(bool))


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path, parent):
    collected = yield
    if file_path.parent.name != "notebooks":
        return collected
    return [NotebookAndWhatToTryNext.from_parent(parent, path=file_path) if type(c) is IPyNbFile else c
            for c in collected]
