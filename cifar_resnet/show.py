"""The package's own code on the notebook page: the source of a function, class or method, read from
the installed package when the cell runs, so the page can never drift from what runs.

    show_source(BasicBlock.forward)      # in a notebook: highlighted, with its file and line
"""
from __future__ import annotations

import html
import inspect
import textwrap
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer


class Source:
    """A piece of the package's source: highlighted HTML in Jupyter, plain text anywhere else."""

    def __init__(self, obj):
        self.name = getattr(obj, "__qualname__", getattr(obj, "__name__", repr(obj)))
        lines, self.line = inspect.getsourcelines(obj)
        self.text = textwrap.dedent("".join(lines)).rstrip() + "\n"
        path = Path(inspect.getsourcefile(obj))
        self.file = "/".join(path.parts[-2:])  # e.g. cifar_resnet/model.py

    @property
    def where(self) -> str:
        return f"{self.file}, line {self.line}: {self.name}"

    def _repr_html_(self) -> str:
        code = highlight(self.text, PythonLexer(), HtmlFormatter(noclasses=True, style="default", nowrap=False))
        return (f"<div style='font-size:0.85em;color:#555;margin-bottom:2px'>{html.escape(self.where)}</div>"
                f"<div style='max-height:40em;overflow:auto'>{code}</div>")

    def __repr__(self) -> str:
        return f"# {self.where}\n{self.text}"


def show_source(obj) -> Source:
    """The source of ``obj`` (a function, class or method of the package), to show in a notebook cell."""
    return Source(obj)
