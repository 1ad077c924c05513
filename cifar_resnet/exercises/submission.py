"""Notebook 05's exercises: batched predictions, the submission writer, the submission's validation."""
from __future__ import annotations

import copy
import csv
import io
import tempfile
from pathlib import Path

import torch

from ..data import Normalization
from ..evaluate import evaluate, predict_logits
from ..kaggle import predict_submission, validate_submission, write_submission
from . import cases
from .evaluation import _small_model
from .marking import Exercise

HEADER = "ID,Labels"
BROKEN_SUBMISSION = "ID,Labels\n0,3\n1,8\n2,8\n3,10\n4,6\n"  # line 5: label 10 is not a class


def check_predict(answer) -> tuple[bool, str]:
    g = cases.generator()
    model = _small_model(g)
    images = cases.images(g, 300, size=8)
    normalization = Normalization.from_images(images[:100] // 2)
    with torch.no_grad():
        expected = model.eval()(normalization(images)).argmax(1)
        unnormalized = model(images.float() / 255).argmax(1)
        batch_statistics = copy.deepcopy(model).train()(normalization(images[:128])).argmax(1)
    model.train()
    result = torch.as_tensor(answer(model, images, normalization, 128), device=cases.CPU).flatten()
    if len(result) != len(images):
        return False, (f"one label per image: {len(images)} images gave {len(result)} labels (the last batch is "
                       f"shorter: range(0, len(images), batch_size) covers it)")
    if torch.equal(result, expected):
        return True, ""
    if torch.equal(result, unnormalized):
        return False, "normalize each batch with `normalization` (the training statistics) before the model sees it"
    if torch.equal(result[:128], batch_statistics):
        return False, "predict in eval mode (model.eval()): in training mode BatchNorm uses each batch's statistics"
    return False, ("model.eval(); then per batch, without gradients: normalization(batch), the model, argmax over the "
                   "classes; concatenate the batches")


def _read(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def check_writer(answer) -> tuple[bool, str]:
    g = cases.generator()
    ids = torch.randperm(1000, generator=g, device=cases.CPU)[:20] + 5
    predictions = torch.randint(0, 10, (20,), generator=g, device=cases.CPU)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "submission.csv"
        if answer(path, ids, predictions) != path or not path.is_file():
            return False, f"write the file at `path` ({path.name}) and return `path`"
        rows = _read(path.read_text())
        try:
            answer(Path(folder) / "short.csv", ids, predictions[:-1])
            refused = False
        except Exception:
            refused = True
    if not rows or ",".join(rows[0]) != HEADER:
        return False, f"start with the header line {HEADER}"
    body = [[int(i), int(p)] for i, p in rows[1:]]
    if body == [[n, int(p)] for n, p in enumerate(predictions)]:
        return False, "write the ids you were given (the pickle's), not the row numbers 0, 1, 2, ..."
    if body != [[int(i), int(p)] for i, p in zip(ids, predictions)]:
        return False, "one line id,label per image, in the ids' order"
    if not refused:
        return False, "refuse ids and predictions of different lengths (raise a ValueError): a row would be lost"
    return True, ""


def _broken_submissions(ids: list[int]) -> dict[str, str]:
    rows = [f"{i},{i % 10}" for i in ids]
    return {"a wrong header": "\n".join(["id,label", *rows]),
            "a label of 10": "\n".join([HEADER, *rows[:-1], f"{ids[-1]},10"]),
            "a label that is not a number": "\n".join([HEADER, *rows[:-1], f"{ids[-1]},cat"]),
            "an id twice": "\n".join([HEADER, *rows, rows[0]]),
            "a missing id": "\n".join([HEADER, *rows[1:]]),
            "an id that is not in the test set": "\n".join([HEADER, *rows, "999999,1"]),
            "a line with three fields": "\n".join([HEADER, *rows[:-1], f"{ids[-1]},1,2"])}


def check_problems(answer) -> tuple[bool, str]:
    g = cases.generator()
    ids = (torch.randperm(500, generator=g, device=cases.CPU)[:12] + 1).tolist()
    good = "\n".join([HEADER, *(f"{i},{i % 10}" for i in ids)]) + "\n"
    found = answer(good, ids)
    if found:
        return False, f"a correct submission has no problems, but yours reported {found!r}"
    for case, text in _broken_submissions(ids).items():
        if not answer(text, ids):
            return False, f"your function found nothing wrong with a submission that has {case}"
    return True, ""


def check_broken_line(answer: int) -> tuple[bool, str]:
    return answer == 5, "read each line's label: the classes are numbered 0 to 9 (the header is line 1)"


EXERCISES = (
    Exercise("predict_in_batches", check_predict, own=(predict_logits, predict_submission, evaluate, "predict_logits")),
    Exercise("write_submission_csv", check_writer, own=(write_submission, predict_submission, "write_submission")),
    Exercise("submission_problems", check_problems, own=(validate_submission, "validate_submission")),
    Exercise("broken_submission_line", check_broken_line, kind="value"),
)
