"""Is a test set shifted from the training set? Its pixel statistics and the classes predicted for it, against the
training images': a check that needs no labels."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .data import CLASSES, Normalization
from .evaluate import class_shares

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
                   f"test accuracy; notebook 04 measures what such shifts cost and what re-estimating BatchNorm's "
                   f"statistics on the test images (what predict does then, unless told --adapt off) gives back." if self.shifted else ""))


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
