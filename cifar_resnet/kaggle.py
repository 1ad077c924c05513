"""Kaggle submission: predict the unlabeled test pickle, write submission.csv and validate it, and
warn when the pickle's images look shifted from the training images."""
from __future__ import annotations

import csv
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .checkpoint import load_model
from .config import SUBMISSION_COLUMNS as COLUMNS
from .data import CLASSES, Normalization, load_kaggle_pickle
from .errors import CifarResnetError
from .evaluate import class_shares, predict_logits
from .files import atomic_write

# Limits past which the test images count as shifted. On the JPEG copy of CIFAR-10 here, 50 random sets
# of 1,000 training images differed from all 50,000 by at most 0.05 training standard deviations in a
# channel's mean and 2.6% in its standard deviation, and the 1,000 public test images by 0.022 and 0.2%;
# each limit is about three times the largest of those. The classes predicted for test images like the
# training images stray from their shares on training images by sampling noise alone (0.02 in total
# for the public test images and a cpu-fast run).
MEAN_SHIFT_LIMIT = 0.15  # a channel's mean, in training standard deviations
STD_RATIO_LIMITS = (0.9, 1.1)  # a channel's standard deviation, as a ratio to the training one
BALANCE_LIMIT = 0.10  # total variation distance of the predicted class shares from those on training images
LEADERBOARD_GAP = ("10.4 to 11.9 points (three course teams' public repositories: 95.49% test accuracy against 85.10% "
                   "on the leaderboard, 95.32% against 84.97%, 96.10% against 84.2%)")  # Kaggle against CIFAR-10 test


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
                       out: str | os.PathLike = "submission.csv", *, tta: bool | str = False,
                       columns: tuple[str, str] = COLUMNS, batch_size: int = 1024,
                       device: torch.device | str | None = None) -> Path:
    """Predict every image of the Kaggle pickle with a checkpoint; write and validate the CSV.

    Warns (DistributionShiftWarning) when the pickle's pixel statistics or the predicted class balance
    are far from the training set's (``check_shift``). The images are normalized with the statistics
    stored in the checkpoint, exactly as in training;
    ``tta`` is as for ``predict_logits`` (True or 'flip', or 'flip-shift').
    """
    model, ckpt = load_model(checkpoint, device)
    images, ids = load_kaggle_pickle(pickle_path)
    logits = predict_logits(model, images, ckpt.normalization, batch_size=batch_size, tta=tta)
    shift = check_shift(images, logits.argmax(1), ckpt.normalization, ckpt.class_shares)
    if shift.shifted:
        warnings.warn(shift.message(), DistributionShiftWarning, stacklevel=2)
    path = write_submission(ids, logits.argmax(1).numpy(), out, columns)
    validate_submission(path, ids, columns)
    return path


def submission_accuracy(submission: str | os.PathLike, labels_csv: str | os.PathLike) -> float:
    """Fraction of ids whose label matches a CSV of true labels in the same ``ID,Labels`` form."""
    def read(path):
        with open(path, newline="") as f:
            return {row[0]: row[1] for row in list(csv.reader(f))[1:]}
    predicted, truth = read(submission), read(labels_csv)
    if set(predicted) != set(truth):
        raise CifarResnetError(f"{submission} and {labels_csv} list different ids")
    return sum(predicted[i] == truth[i] for i in truth) / len(truth)


class DistributionShiftWarning(UserWarning):
    """The test pickle's images look shifted from the training images."""


@dataclass(frozen=True)
class ShiftCheck:
    """How far a test set's pixel statistics and predicted classes are from the training set's."""

    mean_shift: tuple[float, ...]  # per channel: (test mean - training mean) / training std
    std_ratio: tuple[float, ...]  # per channel: test std / training std
    class_shares: tuple[float, ...]  # predicted share of each class
    balance_distance: float  # total variation distance of class_shares from those on training images

    @property
    def shifted(self) -> bool:
        low, high = STD_RATIO_LIMITS
        return (max(abs(m) for m in self.mean_shift) > MEAN_SHIFT_LIMIT
                or not all(low <= r <= high for r in self.std_ratio) or self.balance_distance > BALANCE_LIMIT)

    def message(self) -> str:
        """One paragraph: by how much the test set differs, and what that usually costs."""
        means = ", ".join(f"{m:+.2f}" for m in self.mean_shift)
        ratios = ", ".join(f"{r:.2f}" for r in self.std_ratio)
        verdict = "a distribution shift" if self.shifted else "no shift beyond the limits"
        return (f"test images vs training images: {verdict}. Channel means moved by {means} training standard "
                f"deviations (limit {MEAN_SHIFT_LIMIT}), standard deviations are {ratios} times the training ones "
                f"(limits {STD_RATIO_LIMITS[0]}-{STD_RATIO_LIMITS[1]}), predicted classes are {self.balance_distance:.2f} "
                f"from their shares on training images (limit {BALANCE_LIMIT})."
                + (f" Course teams whose leaderboard images were shifted scored {LEADERBOARD_GAP} below their CIFAR-10 "
                   f"test accuracy; notebook 04 measures what a BatchNorm re-estimation on unlabeled images does "
                   f"against corrupted test images." if self.shifted else ""))


def check_shift(images: Tensor, predictions: Tensor, normalization: Normalization,
                expected_shares: list[float] | None = None) -> ShiftCheck:
    """Compare uint8 test images and their predicted labels with the training set: its pixel statistics
    (``normalization``) and the class shares the model predicts for training images (a checkpoint's
    ``class_shares``; balanced classes when not known)."""
    classes = len(expected_shares) if expected_shares else len(CLASSES)
    expected = torch.tensor(expected_shares or [1 / classes] * classes, dtype=torch.double, device="cpu")
    test = Normalization.from_images(images)
    shares = class_shares(predictions, classes)
    return ShiftCheck(tuple((t - m) / s for t, m, s in zip(test.mean, normalization.mean, normalization.std)),
                      tuple(t / s for t, s in zip(test.std, normalization.std)), tuple(shares.tolist()),
                      float((shares - expected).abs().sum() / 2))
