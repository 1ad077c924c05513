"""The notebooks' exercises and the checks that mark them.

Each exercise sits in the section that teaches its idea: the student writes a function (or a class), the next cell
uses it, and ``check`` marks it against the package's own implementation on fresh random inputs, with a hint that
helps when it is wrong. An answer left as it was (``...``, or a body that is still ``...``) is "not answered yet",
never an error, so Run All goes through; ``use`` then hands the next cell the package's version instead. An answer
that is, wraps or calls the package's implementation is refused, as is a preset where a design is asked for.
The solutions live in notebooks/solutions/; the test suite runs them and shows a typical mistake caught for each.
"""
from __future__ import annotations

from typing import Any

from . import architecture, data_and_augmentation, evaluation, submission, training
from .marking import RIGHT, UNANSWERED, WRONG, Exercise, verdict

BY_NOTEBOOK = {"01": data_and_augmentation.EXERCISES, "02": architecture.EXERCISES, "03": training.EXERCISES,
               "04": evaluation.EXERCISES, "05": submission.EXERCISES}
EXERCISES: dict[str, Exercise] = {e.name: e for exercises in BY_NOTEBOOK.values() for e in exercises}

__all__ = ["EXERCISES", "BY_NOTEBOOK", "RIGHT", "WRONG", "UNANSWERED", "check", "mark", "use"]


def mark(name: str, answer) -> tuple[str, str]:
    """(RIGHT, WRONG or UNANSWERED, the message) for ``answer`` to exercise ``name``."""
    return verdict(EXERCISES[name], answer)


def check(name: str, answer) -> None:
    """Print whether ``answer`` to exercise ``name`` is right, with a hint when it is not (``mark`` returns it)."""
    result, message = mark(name, answer)
    print({RIGHT: "✓ ", WRONG: "✗ "}.get(result, "… ") + message)


def use(name: str, answer, fallback: Any) -> Any:
    """``answer`` when it is right, else ``fallback`` (the package's version, or None: the cell waits for yours),
    saying which the cell runs."""
    if mark(name, answer)[0] == RIGHT:
        print(f"using your {name}")
        return answer
    print(f"using the package's version until your {name} is right" if fallback is not None else
          f"{name} is not right yet: this cell skips it until it is")
    return fallback
