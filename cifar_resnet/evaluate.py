"""Batched predictions and their scores: accuracy, per-class accuracy, confusion matrix, calibration.

``predict_logits`` is the one inference routine: validation during training, ``evaluate`` and the
Kaggle submission all call it, so they normalize and batch images identically.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import TTA_MODES, ConfigurationError
from .data import CLASSES, Normalization
from .device import Compute
from .memory import kept_for_reuse


def tta_mode(tta: bool | str) -> str:
    """'off', 'flip' or 'flip-shift' for ``tta`` given as one of those or as a bool (True = 'flip')."""
    mode = ("flip" if tta else "off") if isinstance(tta, bool) else tta
    if mode not in TTA_MODES:
        raise ConfigurationError(f"tta = {tta!r}: use one of {TTA_MODES} (or True for 'flip')")
    return mode


def _tta_logits(model: nn.Module, x: Tensor, mode: str, memory_format: torch.memory_format) -> Tensor:
    """The model's logits for x, averaged over the test-time views of ``mode``."""
    def with_mirror(v: Tensor) -> Tensor:
        return (model(v).float() + model(v.flip(3)).float()) / 2 if mode != "off" else model(v).float()

    logits = with_mirror(x)
    if mode == "flip-shift":  # half on the image, a quarter each on it moved 1 pixel up-left and down-right
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        logits = (logits / 2 + with_mirror(padded[..., :-2, :-2].contiguous(memory_format=memory_format)) / 4
                  + with_mirror(padded[..., 2:, 2:].contiguous(memory_format=memory_format)) / 4)
    return logits


@torch.no_grad()
def predict_logits(model: nn.Module, images: Tensor, normalization: Normalization, *,
                   batch_size: int = 1024, tta: bool | str = False, compute: Compute | None = None) -> Tensor:
    """Logits (N, classes) in float32 on the CPU for uint8 images (N, 3, 32, 32).

    Images move to the model's device one batch at a time, so memory stays at one batch.
    ``tta``: 'flip' (or True) averages the logits of each image and its mirror image;
    'flip-shift' also those of both moved one pixel diagonally each way (6 views in all).
    ``compute``: how to compute (``device.Compute``: a run's, else one chosen for the model's device); the
    images go to the device the model is on.
    """
    mode = tta_mode(tta)
    device = next(model.parameters()).device
    compute = dataclasses.replace(compute, device=device) if compute else Compute.choose(device)
    memory_format = torch.channels_last if compute.channels_last else torch.contiguous_format
    was_training = model.training
    model.eval()
    outputs = []
    with kept_for_reuse(device):  # each batch's activations reuse the last one's memory
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device, non_blocking=True)
            x = normalization(x.contiguous(memory_format=memory_format))
            with compute.autocast():
                logits = _tta_logits(model, x, mode, memory_format)
            outputs.append(logits.cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0, 0, device="cpu")


@dataclass
class Evaluation:
    """Scores of one model on labelled images."""

    accuracy: float
    per_class: dict[str, float]
    confusion: Tensor  # (classes, classes): row = true class, column = predicted class
    predictions: Tensor  # (N,) predicted labels
    probabilities: Tensor  # (N, classes) softmax probabilities
    labels: Tensor  # (N,) true labels

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "per_class": self.per_class,
                "confusion": self.confusion.tolist(), "images": len(self.labels)}

    def most_confident_mistakes(self, k: int = 16) -> Tensor:
        """Indices of the ``k`` wrong predictions made with the highest probability."""
        wrong = torch.nonzero(self.predictions != self.labels).flatten()
        confidence = self.probabilities[wrong, self.predictions[wrong]]
        return wrong[torch.argsort(confidence, descending=True)[:k]]


def confusion_counts(labels: Tensor, predictions: Tensor, classes: int = len(CLASSES)) -> Tensor:
    """Counts (classes, classes) of (true, predicted) pairs."""
    return torch.bincount(labels * classes + predictions, minlength=classes * classes).view(classes, classes)


def calibration_bins(probabilities: Tensor, labels: Tensor, bins: int = 15) -> tuple[Tensor, Tensor, Tensor]:
    """Per bin of confidence (the top probability; ``bins`` bins of equal width over [0, 1]): the mean confidence,
    the accuracy and the number of images (Guo et al., 2017). Empty bins have confidence and accuracy 0."""
    confidence, predicted = probabilities.max(dim=1)
    index = (confidence.double() * bins).long().clamp(max=bins - 1)
    count = torch.bincount(index, minlength=bins).double()
    held = count.clamp(min=1)
    return (torch.bincount(index, weights=confidence.double(), minlength=bins) / held,
            torch.bincount(index, weights=(predicted == labels).double(), minlength=bins) / held, count)


def expected_calibration_error(probabilities: Tensor, labels: Tensor, bins: int = 15) -> float:
    """ECE: the gap between accuracy and confidence in each bin, weighted by the bin's share of the images."""
    confidence, accuracy, count = calibration_bins(probabilities, labels, bins)
    return float((count / count.sum() * (accuracy - confidence).abs()).sum())


def class_shares(predictions: Tensor, classes: int = len(CLASSES)) -> Tensor:
    """The share of the predictions that went to each class (float64, summing to 1)."""
    return torch.bincount(predictions.cpu(), minlength=classes).double() / max(len(predictions), 1)


def score(logits: Tensor, labels: Tensor, classes: tuple[str, ...] = CLASSES) -> Evaluation:
    """Turn logits and true labels into an Evaluation."""
    probabilities = logits.softmax(dim=1)
    predictions = probabilities.argmax(dim=1)
    confusion = confusion_counts(labels, predictions, len(classes))
    counts, hits = confusion.sum(dim=1).tolist(), confusion.diagonal().tolist()
    per_class = {c: hits[i] / counts[i] if counts[i] else float("nan") for i, c in enumerate(classes)}
    accuracy = sum(hits) / len(labels) if len(labels) else float("nan")
    return Evaluation(accuracy, per_class, confusion, predictions, probabilities, labels)


def evaluate(model: nn.Module, images: Tensor, labels: Tensor, normalization: Normalization, *,
             tta: bool | str = False, batch_size: int = 1024, compute: Compute | None = None) -> Evaluation:
    """Accuracy, per-class accuracy, confusion matrix and predictions of ``model`` on the images."""
    logits = predict_logits(model, images, normalization, batch_size=batch_size, tta=tta, compute=compute)
    return score(logits, labels.cpu())

