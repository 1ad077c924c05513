"""Kaggle submission: predict the unlabeled test pickle, write submission.csv and validate it; warn when the
pickle's images look shifted from the training images, and then re-estimate BatchNorm on them."""
from __future__ import annotations

import csv
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from .adaptation import predict_adapted
from .checkpoint import load_model
from .config import SUBMISSION_COLUMNS as COLUMNS
from .data import CLASSES, load_kaggle_pickle
from .errors import CifarResnetError
from .evaluate import tta_mode
from .files import atomic_write
from .shift import DistributionShiftWarning, ShiftCheck, check_shift  # noqa: F401  (kaggle's names too)


def write_submission(ids, labels, path: str | os.PathLike, columns: tuple[str, str] = COLUMNS) -> Path:
    """Write one ``id,label`` row per id, in the given order, under a header (atomically)."""
    ids, labels = np.asarray(ids), np.asarray(labels)
    if ids.shape != labels.shape:
        raise CifarResnetError(f"{len(ids)} ids but {len(labels)} labels: one label per id is needed")
    path = Path(path)
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(ids.tolist(), labels.tolist()))
    return path


def validate_submission(path: str | os.PathLike, ids, columns: tuple[str, str] = COLUMNS,
                        num_classes: int = len(CLASSES)) -> int:
    """Check a submission CSV against the test ids; return its row count.

    Checks the header, that every row has an integer id and an integer label in 0..classes-1,
    that ids are unique, and that exactly the test ids appear. Raises CifarResnetError naming the
    first bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise CifarResnetError(f"submission {path} does not exist")
    expected = {str(int(i)) for i in np.asarray(ids).tolist()}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(h.strip() for h in rows[0]) != tuple(columns):
        found = ",".join(rows[0]) if rows else "an empty file"
        raise CifarResnetError(f"submission {path}: header is {found!r}, expected {','.join(columns)!r}")
    seen = set()
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise CifarResnetError(f"submission {path}, line {line}: {len(row)} fields, expected 2 ({row})")
        raw_id, raw_label = (v.strip() for v in row)
        if not raw_id.lstrip("-").isdigit() or str(int(raw_id)) not in expected:
            raise CifarResnetError(f"submission {path}, line {line}: id {raw_id!r} is not an id of the test set")
        if raw_id in seen:
            raise CifarResnetError(f"submission {path}, line {line}: id {raw_id} appears twice")
        seen.add(str(int(raw_id)))
        if not raw_label.isdigit() or not 0 <= int(raw_label) < num_classes:
            raise CifarResnetError(f"submission {path}, line {line}: label {raw_label!r} is not an integer "
                                   f"0-{num_classes - 1}")
    missing = expected - seen
    if missing:
        raise CifarResnetError(f"submission {path}: {len(missing)} test ids have no row "
                               f"(for example {sorted(missing, key=int)[0]})")
    return len(rows) - 1


def predict_submission(checkpoint: str | os.PathLike, pickle_path: str | os.PathLike,
                       out: str | os.PathLike = "submission.csv", *, tta: bool | str = False, adapt: str = "auto",
                       columns: tuple[str, str] = COLUMNS, batch_size: int = 1024,
                       device: torch.device | str | None = None) -> Path:
    """Predict every image of the Kaggle pickle with a checkpoint; write and validate the CSV.

    The images are normalized with the statistics stored in the checkpoint, exactly as in training, and checked
    for a shift from the training images (``shift.check_shift``): when they look shifted, a
    DistributionShiftWarning says by how much, and with ``adapt`` 'auto' BatchNorm's statistics are re-estimated
    on them before predicting (``adaptation.predict_adapted``; 'off' never, 'always' whatever the check says).
    What was done is written beside the CSV (``prediction_record``). ``tta`` is as for ``predict_logits``
    (True or 'flip', or 'flip-shift').
    """
    model, ckpt = load_model(checkpoint, device)
    images, ids = load_kaggle_pickle(pickle_path)
    prediction = predict_adapted(model, images, ckpt.normalization, ckpt.class_shares, adapt=adapt, tta=tta,
                                 batch_size=batch_size)
    if prediction.shift.shifted:
        warnings.warn(prediction.shift.message(), DistributionShiftWarning, stacklevel=2)
    path = write_submission(ids, prediction.logits.argmax(1).numpy(), out, columns)
    validate_submission(path, ids, columns)
    record = {"checkpoint": str(checkpoint), "test_pickle": str(pickle_path), "images": len(ids),
              "tta": tta_mode(tta), "adapt": adapt, "shifted": prediction.shift.shifted,
              "batchnorm_reestimated": prediction.recalibrated, "test_time_adaptation": prediction.action()}
    with atomic_write(record_path(path)) as f:
        json.dump(record, f, indent=1)
    return path


def record_path(submission: str | os.PathLike) -> Path:
    """Where ``predict_submission`` says what it did: beside the CSV, as .json (submission.csv -> submission.json)."""
    return Path(submission).with_suffix(".json")


def prediction_record(submission: str | os.PathLike) -> dict | None:
    """What ``predict_submission`` did for this CSV (TTA, shift, BatchNorm re-estimated), or None when it did not
    write the CSV or its record cannot be read."""
    try:
        return json.loads(record_path(submission).read_text())
    except (OSError, ValueError):
        return None


def submission_accuracy(submission: str | os.PathLike, labels_csv: str | os.PathLike) -> float:
    """Fraction of ids whose label matches a CSV of true labels in the same ``ID,Labels`` form."""
    def read(path):
        with open(path, newline="") as f:
            return {row[0]: row[1] for row in list(csv.reader(f))[1:]}
    predicted, truth = read(submission), read(labels_csv)
    if set(predicted) != set(truth):
        raise CifarResnetError(f"{submission} and {labels_csv} list different ids")
    return sum(predicted[i] == truth[i] for i in truth) / len(truth)
