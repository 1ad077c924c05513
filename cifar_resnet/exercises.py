"""The notebooks' exercises and the checks that mark them.

Each notebook ends its sections with exercises the student writes: a function or a number. ``check``
marks an answer right or wrong with a hint that helps, and says "not answered yet" for an answer left
as it was (``...`` or a function whose body is still ``...``), never raising, so Run All goes through.
The solutions live in notebooks/solutions/; the test suite checks them, and checks that wrong answers
are caught.
"""
from __future__ import annotations

import csv
import io
from typing import Callable

import torch

from .budget import count_parameters
from .config import PARAMETER_BUDGET, PRESETS, ModelConfig
from .data import CLASSES, Normalization
from .evaluate import confusion_counts
from .schedule import lr_at

RIGHT, WRONG, UNANSWERED = "right", "wrong", "not answered yet"


def _images(seed: int = 0, n: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed),
                         device="cpu")


def _check_hflip(answer: Callable) -> tuple[bool, str]:
    images = _images()
    result = answer(images.clone())
    if not isinstance(result, torch.Tensor) or result.shape != images.shape:
        return False, "return a tensor of the same shape (N, 3, 32, 32): one mirrored image for each image"
    if torch.equal(result, images.flip(2)):
        return False, "that flips top to bottom: a left-right mirror reverses the last dimension (the columns)"
    return torch.equal(result, images.flip(3)), "each image's columns should come in reverse order (dimension 3)"


def _check_channel_means(answer: Callable) -> tuple[bool, str]:
    images = _images(1, 64)
    result = torch.as_tensor(answer(images), dtype=torch.float64, device="cpu").flatten()
    expected = torch.tensor(Normalization.from_images(images).mean, dtype=torch.float64, device="cpu")
    if result.shape != (3,):
        return False, f"return three numbers, one per colour channel (got shape {tuple(result.shape)})"
    if torch.allclose(result, expected * 255, atol=1e-3):
        return False, "those are on the 0-255 scale: divide by 255 so that they lie in [0, 1]"
    return torch.allclose(result, expected, atol=1e-4), "average over the images, rows and columns: dims (0, 2, 3)"


def _check_stage_2(answer: int) -> tuple[bool, str]:
    expected = count_parameters(PRESETS["reference"].model).by_group["stage 2"]
    return answer == expected, ("count four blocks of 132 channels: the first block's conv1 sees 66 channels and has a "
                                "1x1 projection shortcut with its BatchNorm; each BatchNorm has 2 x channels")


def _check_four_stages(answer: ModelConfig) -> tuple[bool, str]:
    if not isinstance(answer, ModelConfig) or answer.stages != 4:
        return False, "give a ModelConfig with four stages (four entries in blocks and channels)"
    report = count_parameters(answer)
    if not report.fits_budget:
        return False, f"{report.verdict}: narrow the last stage, whose channels cost the most"
    return report.total >= 4_000_000, f"it fits with {report.total:,}; use the budget: at least 4,000,000 parameters"


def _check_mid_lr(answer: float) -> tuple[bool, str]:
    expected = lr_at(0.5, 0.2, 0.05)
    return abs(answer - expected) < 1e-6, ("half way through, the cosine has run (0.5 - 0.05) / 0.95 of its course: "
                                           "0.2 * (1 + cos(pi * that)) / 2")


def _check_accuracy(answer: Callable) -> tuple[bool, str]:
    logits = torch.randn(50, 10, generator=torch.Generator().manual_seed(2), device="cpu")
    labels = torch.arange(50, device="cpu") % 10
    expected = (logits.argmax(1) == labels).float().mean().item()
    result = float(answer(logits, labels))
    if abs(result - 100 * expected) < 1e-6:
        return False, "give a fraction in [0, 1], not a percentage"
    return abs(result - expected) < 1e-6, "compare each row's largest logit (argmax over dim 1) with its label"


def _confusion() -> torch.Tensor:
    labels = torch.arange(200, device="cpu") % 10
    predictions = torch.where(torch.arange(200, device="cpu") % 3 == 0, (labels + 1) % 10, labels)
    return confusion_counts(labels, predictions)


def _check_accuracy_from_confusion(answer: Callable) -> tuple[bool, str]:
    confusion = _confusion()
    expected = (confusion.diagonal().sum() / confusion.sum()).item()
    return abs(float(answer(confusion)) - expected) < 1e-6, "the diagonal holds the right answers; divide by all answers"


def _check_recall(answer: Callable) -> tuple[bool, str]:
    confusion = _confusion()
    expected = [(confusion[c, c] / confusion[c].sum()).item() for c in range(len(CLASSES))]
    result = [float(answer(confusion, c)) for c in range(len(CLASSES))]
    precision = [(confusion[c, c] / confusion[:, c].sum()).item() for c in range(len(CLASSES))]
    if all(abs(a - b) < 1e-6 for a, b in zip(result, precision)) and result != expected:
        return False, "that is precision (a column): recall divides by the images of the class, its row"
    return all(abs(a - b) < 1e-6 for a, b in zip(result, expected)), "row c: true class c; divide its diagonal entry by its sum"


BROKEN_SUBMISSION = "ID,Labels\n0,3\n1,8\n2,8\n3,10\n4,6\n"  # line 5: label 10 is not a class


def _check_broken_line(answer: int) -> tuple[bool, str]:
    return answer == 5, "read each line's label: the classes are numbered 0 to 9 (the header is line 1)"


def _check_submission_rows(answer: Callable) -> tuple[bool, str]:
    ids, predictions = [17, 3, 99], [4, 0, 9]
    text = answer(ids, predictions)
    rows = list(csv.reader(io.StringIO(text))) if isinstance(text, str) else []
    if not rows or rows[0] != ["ID", "Labels"]:
        return False, "start with the header line ID,Labels"
    return rows[1:] == [["17", "4"], ["3", "0"], ["99", "9"]], "one line id,label per image, in the ids' order"


CHECKS: dict[str, tuple[Callable, bool]] = {  # name: (check, whether the answer is a function)
    "batched_hflip": (_check_hflip, True), "channel_means": (_check_channel_means, True),
    "stage_2_parameters": (_check_stage_2, False), "four_stage_config": (_check_four_stages, False),
    "lr_at_half_way": (_check_mid_lr, False), "accuracy": (_check_accuracy, True),
    "accuracy_from_confusion": (_check_accuracy_from_confusion, True), "recall": (_check_recall, True),
    "broken_submission_line": (_check_broken_line, False), "submission_rows": (_check_submission_rows, True),
}


class _NotAnswered(Exception):
    """A function answer that still returns None: its body is still ``...``."""


def _answered(function: Callable) -> Callable:
    def call(*args):
        result = function(*args)
        if result is None:
            raise _NotAnswered
        return result
    return call


def mark(name: str, answer) -> tuple[str, str]:
    """(RIGHT, WRONG or UNANSWERED, the message) for ``answer`` to exercise ``name``."""
    check, is_function = CHECKS[name]
    if answer is None or answer is ...:
        return UNANSWERED, f"{name}: not answered yet"
    if is_function and not callable(answer):
        return WRONG, f"{name}: give a function, not a {type(answer).__name__}"
    try:
        right, hint = check(_answered(answer) if is_function else answer)
    except _NotAnswered:
        return UNANSWERED, f"{name}: not answered yet (the function returns nothing)"
    except Exception as e:  # a student's function may fail in any way: that is a wrong answer, with the reason
        return WRONG, f"{name}: your answer failed with {type(e).__name__}: {e}"
    return (RIGHT, f"{name}: right") if right else (WRONG, f"{name}: not yet. Hint: {hint}")


def check(name: str, answer) -> bool:
    """Print whether ``answer`` to exercise ``name`` is right (with a hint when not); True if it is."""
    verdict, message = mark(name, answer)
    print({RIGHT: "✓ ", WRONG: "✗ "}.get(verdict, "… ") + message)
    return verdict == RIGHT
