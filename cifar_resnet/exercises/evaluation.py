"""Notebook 04's exercises: flip test-time augmentation, the confusion matrix, recall, the calibration error,
BatchNorm re-estimated on shifted images."""
from __future__ import annotations

import torch
from torch import nn

from ..adaptation import batchnorms, recalibrate_batchnorm
from ..data import CLASSES
from ..evaluate import (_tta_logits, calibration_bins, confusion_counts, evaluate, expected_calibration_error,
                        predict_logits)
from . import cases
from .marking import Exercise


def _small_model(g: torch.Generator) -> nn.Module:
    """A random network with BatchNorm statistics far from a batch's, whose answer changes with the mirror image."""
    torch.manual_seed(cases.integer(g, 0, 10 ** 6))
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10))
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1, generator=g)
        model[1].running_var.uniform_(2, 4, generator=g)
    return model


def check_flip_tta(answer) -> tuple[bool, str]:
    g = cases.generator()
    model = _small_model(g)
    x = torch.randn(16, 3, 8, 8, generator=g, device=cases.CPU)
    with torch.no_grad():
        expected = _tta_logits(model.eval(), x, "flip", torch.contiguous_format)
        upside_down = (model(x) + model(x.flip(2))) / 2
    model.train()
    result = answer(model, x)
    if not isinstance(result, torch.Tensor) or result.shape != expected.shape:
        return False, f"return the averaged logits, one row of 10 per image: shape {tuple(expected.shape)}"
    result = result.detach().float()
    if torch.allclose(result, upside_down, atol=1e-4):
        return False, "that mirrors top to bottom: a left-right mirror reverses the last dimension (the columns, dim 3)"
    if not torch.allclose(result, expected, atol=1e-4):
        return False, ("in eval mode (model.eval(), so BatchNorm uses its running statistics) and without gradients, "
                       "average model(x) and model(x.flip(3))")
    return True, ""


def _predictions(g: torch.Generator, n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(0, 10, (n,), generator=g, device=cases.CPU)
    wrong = torch.rand(n, generator=g, device=cases.CPU) < 0.4
    others = (labels + torch.randint(1, 10, (n,), generator=g, device=cases.CPU)) % 10
    return labels, torch.where(wrong, others, labels)


def check_confusion(answer) -> tuple[bool, str]:
    labels, predictions = _predictions(cases.generator())
    expected = confusion_counts(labels, predictions)
    result = torch.as_tensor(answer(labels, predictions, 10), device=cases.CPU)
    if result.shape != (10, 10):
        return False, "return a (classes, classes) matrix of counts"
    if torch.equal(result.long(), expected.T):
        return False, "rows are the true classes and columns the predictions: yours is the other way round"
    return torch.equal(result.long(), expected), ("entry [t, p] counts the images of true class t predicted as p: "
                                                  "torch.bincount(labels * classes + predictions, minlength=classes**2)")


def check_recall(answer) -> tuple[bool, str]:
    confusion = confusion_counts(*_predictions(cases.generator()))
    expected = [(confusion[c, c] / confusion[c].sum()).item() for c in range(len(CLASSES))]
    result = [float(answer(confusion, c)) for c in range(len(CLASSES))]
    precision = [(confusion[c, c] / confusion[:, c].sum()).item() for c in range(len(CLASSES))]
    if all(abs(a - b) < 1e-6 for a, b in zip(result, precision)):
        return False, "that is precision (a column): recall divides by the images of the class, its row"
    return all(abs(a - b) < 1e-6 for a, b in zip(result, expected)), "row c: true class c; its diagonal entry by its sum"


def _overconfident(g: torch.Generator, n: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities (n, 10) that are right more often than chance, and over-confident, and their labels."""
    labels = torch.randint(0, 10, (n,), generator=g, device=cases.CPU)
    logits = 3 * torch.randn(n, 10, generator=g, device=cases.CPU)
    logits[torch.arange(n), labels] += 2.0
    return logits.softmax(1), labels


def check_bins(answer) -> tuple[bool, str]:
    probabilities, labels = _overconfident(cases.generator())
    probabilities[0] = torch.nn.functional.one_hot(labels[0], 10).double()  # a confidence of exactly 1
    for bins in (10, 15):
        result = answer(probabilities, labels, bins)
        if not (isinstance(result, tuple) and len(result) == 3):
            return False, "return three tensors of one value per bin: mean confidence, accuracy, number of images"
        confidence, accuracy, count = (torch.as_tensor(t, device=cases.CPU).double().flatten() for t in result)
        want_confidence, want_accuracy, want_count = calibration_bins(probabilities, labels, bins)
        if len(count) != bins or not torch.equal(count, want_count):
            return False, (f"{bins} bins of equal width over [0, 1] by the top probability: bin = floor(confidence * "
                           f"bins), a confidence of exactly 1 in the last bin (yours counted {count.tolist()})")
        held = want_count > 0
        if not torch.allclose(accuracy[held], want_accuracy[held], atol=1e-6):
            return False, "a bin's accuracy: the share of its images whose top class (argmax) is the label"
        if not torch.allclose(confidence[held], want_confidence[held], atol=1e-6):
            return False, "a bin's confidence: the mean top probability of its images"
    return True, ""


def check_calibration(answer) -> tuple[bool, str]:
    probabilities, labels = _overconfident(cases.generator())
    for bins in (10, 15):
        expected = expected_calibration_error(probabilities, labels, bins)
        found = float(answer(probabilities, labels, bins))
        confidence, accuracy, count = calibration_bins(probabilities, labels, bins)
        unweighted = float((accuracy - confidence).abs()[count > 0].mean())
        if abs(found - unweighted) < 1e-6 and abs(found - expected) > 1e-6:
            return False, "weight each bin's gap by its share of the images: a bin of 3 images counts less than 300"
        if abs(found - expected) > 1e-6:
            return False, (f"with {bins} bins of equal width over the confidence (the top probability), the error is "
                           f"sum over bins of (images in bin / all images) * |accuracy in bin - mean confidence in "
                           f"bin|: {expected:.4f} here, yours {found:.4f}")
    return True, ""


def check_reestimate(answer) -> tuple[bool, str]:
    g = cases.generator()
    model = _small_model(g)
    shifted = 0.5 + 2 * torch.randn(200, 3, 8, 8, generator=g, device=cases.CPU)  # far from its statistics
    expected = batchnorms(recalibrate_batchnorm(model, shifted, normalization=lambda x: x))[0]
    before = batchnorms(model)[0].running_mean.clone()
    result = answer(model, shifted.clone())
    norm = batchnorms(result)[0] if isinstance(result, nn.Module) and batchnorms(result) else None
    if norm is None:
        return False, "return the model (with its BatchNorm layers) after measuring their statistics on x"
    if torch.allclose(norm.running_mean, before):
        return False, ("the running statistics did not change: BatchNorm updates them only in training mode "
                       "(model.train()) during a forward pass of x")
    if result.training:
        return False, "leave the model in eval mode (model.eval()), so that it predicts with the new statistics"
    if any(p.grad is not None for p in result.parameters()):
        return False, "measure without gradients (torch.no_grad()): nothing is learned, only counted"
    if not (torch.allclose(norm.running_mean, expected.running_mean, atol=1e-5)
            and torch.allclose(norm.running_var, expected.running_var, atol=1e-4)):
        return False, ("the statistics must be x's alone: first norm.reset_running_stats(), and norm.momentum = None "
                       "(an equal-weight average over the batches instead of a running one), then one forward pass")
    return True, ""


EXERCISES = (
    Exercise("flip_tta_logits", check_flip_tta, own=(_tta_logits, predict_logits, evaluate, "predict_logits")),
    Exercise("confusion_matrix", check_confusion, own=(confusion_counts, "confusion_counts", "score"), no_loop=True),
    Exercise("recall", check_recall),
    Exercise("calibration_bins", check_bins, own=(calibration_bins, "calibration_bins")),
    Exercise("expected_calibration_error", check_calibration,
             own=(expected_calibration_error, calibration_bins, "calibration_bins")),
    Exercise("reestimate_batchnorm", check_reestimate, own=(recalibrate_batchnorm, "recalibrate_batchnorm")),
)
