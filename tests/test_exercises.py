"""Every exercise's check: the solution is right, typical mistakes are caught with a hint, and an
untouched exercise says "not answered yet" without stopping Run All."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from cifar_resnet.config import ModelConfig
from cifar_resnet.exercises import CHECKS, RIGHT, UNANSWERED, WRONG, check, mark

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("solutions", ROOT / "notebooks" / "solutions" / "exercises.py")
SOLUTIONS = importlib.util.module_from_spec(spec)
spec.loader.exec_module(SOLUTIONS)

MISTAKES = {  # name: (a typical wrong answer, words its hint must contain)
    "batched_hflip": (lambda images: images.flip(2), "top to bottom"),
    "channel_means": (lambda images: images.double().mean(dim=(0, 2, 3)), "divide by 255"),
    "stage_2_parameters": (SOLUTIONS.stage_2_parameters - 2 * 132, "BatchNorm has 2 x channels"),
    "four_stage_config": (ModelConfig(blocks=(2, 2, 2, 2), channels=(64, 128, 256, 512), pool=4), "OVER the budget"),
    "lr_at_half_way": (0.1, "cos"),
    "accuracy": (lambda logits, labels: 100 * (logits.argmax(1) == labels).float().mean(), "not a percentage"),
    "accuracy_from_confusion": (lambda confusion: confusion.diagonal().sum(), "divide by all answers"),
    "recall": (lambda confusion, c: confusion[c, c] / confusion[:, c].sum(), "that is precision"),
    "broken_submission_line": (4, "classes are numbered 0 to 9"),
    "submission_rows": (lambda ids, predictions: "\n".join(f"{i},{p}" for i, p in zip(ids, predictions)), "header"),
}


def test_every_exercise_has_a_solution_and_a_mistake():
    assert set(MISTAKES) == set(CHECKS) and all(hasattr(SOLUTIONS, name) for name in CHECKS)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_solution_is_right_and_a_mistake_is_caught_with_a_hint(name, capsys):
    assert check(name, getattr(SOLUTIONS, name)) and capsys.readouterr().out == f"✓ {name}: right\n"
    wrong, words = MISTAKES[name]
    verdict, message = mark(name, wrong)
    assert verdict == WRONG and words in message, message


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_an_untouched_exercise_is_not_answered_yet(name, capsys):
    def stub(*args):
        ...

    for untouched in (..., None, stub if CHECKS[name][1] else ...):
        assert mark(name, untouched)[0] == UNANSWERED
    assert not check(name, ...) and "not answered yet" in capsys.readouterr().out


def test_an_answer_that_crashes_is_wrong_with_its_reason():
    verdict, message = mark("batched_hflip", lambda images: images.flip(7))
    assert verdict == WRONG and "IndexError" in message


def test_every_notebook_has_two_checked_exercises_and_a_questionnaire():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert code.count('check("') >= 2, path.name
        assert any("## Questionnaire" in "".join(c["source"]) for c in cells), path.name
