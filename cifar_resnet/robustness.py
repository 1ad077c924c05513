"""Robustness in CIFAR-10-C's terms: accuracy on each corruption at each severity (``corruptions``), the mean
corruption accuracy, and the corruption errors relative to a named baseline run (Hendrycks & Dietterich, 2019).

Predictions go through ``adaptation.predict_adapted``, the path ``predict`` takes, so a table says what a student's
submission would score on such images: with ``adapt='auto'`` BatchNorm is re-estimated on each corrupted set whose
shift check fires, as ``predict`` does; ``adapt='off'`` is the model as trained.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .adaptation import predict_adapted
from .corruptions import CORRUPTIONS, SEVERITIES, corrupt
from .data import Normalization
from .device import Compute
from .files import atomic_write

ROBUSTNESS_FILE = "robustness.json"  # a run's corruption results, beside its figures (notebook 04 writes it)
MEASURED_FILE = Path(__file__).resolve().parent / "measured" / "robustness.json"  # benchmarks/robustness.py's runs


@dataclass(frozen=True)
class CorruptionResult:
    """Accuracy on one corrupted set (severity 0: the clean images), and whether BatchNorm was re-estimated."""

    corruption: str
    severity: int
    accuracy: float
    recalibrated: bool
    images: int

    def to_dict(self) -> dict:
        return {"corruption": self.corruption, "severity": self.severity, "accuracy": self.accuracy,
                "recalibrated": self.recalibrated, "images": self.images}


def corrupted_sets(images: Tensor, corruptions: tuple[str, ...] = CORRUPTIONS,
                   severities: tuple[int, ...] = SEVERITIES, seed: int = 0) -> Iterator[tuple[str, int, Tensor]]:
    """(corruption, severity, corrupted images) for the clean images (('clean', 0, images)) and then every
    corruption at every severity; corrupted set k is drawn from seed ``seed * 1000 + k``."""
    yield "clean", 0, images
    for k, (corruption, severity) in enumerate((c, s) for c in corruptions for s in severities):
        yield corruption, severity, corrupt(images, corruption, severity, seed * 1000 + k)


def corruption_results(model: nn.Module, images: Tensor, labels: Tensor, normalization: Normalization,
                       class_shares: list[float] | None = None, *, adapts: tuple[str, ...] = ("auto",),
                       tta: bool | str = False, corruptions: tuple[str, ...] = CORRUPTIONS,
                       severities: tuple[int, ...] = SEVERITIES, seed: int = 0, compute: Compute | None = None,
                       progress: bool = True) -> dict[str, list[CorruptionResult]]:
    """{adapt: results} for each way of adapting in ``adapts`` ('auto': as ``predict`` does; 'off': as trained;
    'always'): one result for the clean images, then one per corruption and severity (``corrupted_sets``, each
    made once for all the ways)."""
    results = {adapt: [] for adapt in adapts}
    total = 1 + len(corruptions) * len(severities)
    for corruption, severity, x in tqdm(corrupted_sets(images, corruptions, severities, seed), total=total,
                                        desc="corrupted sets", disable=not progress):
        for adapt in adapts:
            results[adapt].append(score_set(model, x, labels, normalization, class_shares, corruption, severity,
                                            adapt=adapt, tta=tta, compute=compute))
    return results


def score_set(model: nn.Module, images: Tensor, labels: Tensor, normalization: Normalization,
              class_shares: list[float] | None, corruption: str, severity: int, *, adapt: str = "auto",
              tta: bool | str = False, compute: Compute | None = None) -> CorruptionResult:
    """The accuracy on one (corrupted) set of images, predicted as ``predict`` would."""
    prediction = predict_adapted(model, images, normalization, class_shares, adapt=adapt, tta=tta, compute=compute)
    accuracy = (prediction.logits.argmax(1) == labels.cpu()).float().mean().item()
    return CorruptionResult(corruption, severity, accuracy, prediction.recalibrated, len(labels))


def mean_accuracies(results: list[CorruptionResult]) -> dict[str, float]:
    """Each corruption's accuracy averaged over its severities."""
    by_corruption: dict[str, list[float]] = {}
    for r in results:
        if r.severity:
            by_corruption.setdefault(r.corruption, []).append(r.accuracy)
    return {c: sum(a) / len(a) for c, a in by_corruption.items()}


def mean_corruption_accuracy(results: list[CorruptionResult]) -> float:
    """The mean over every corruption and severity (CIFAR-10-C's 'mean corruption accuracy')."""
    means = mean_accuracies(results)
    return sum(means.values()) / len(means)


def corruption_errors(results: list[CorruptionResult], baseline: list[CorruptionResult]) -> dict[str, float]:
    """CE_c = sum over severities of the error on corruption c / the same sum for the baseline run (the paper's
    normalization, with a named run of this package in AlexNet's place); 'mCE' is their mean."""
    def summed_errors(rows):
        sums: dict[str, float] = {}
        for r in rows:
            if r.severity:
                sums[r.corruption] = sums.get(r.corruption, 0.0) + 1 - r.accuracy
        return sums

    ours, theirs = summed_errors(results), summed_errors(baseline)
    errors = {c: ours[c] / theirs[c] for c in ours if theirs.get(c)}
    return {**errors, "mCE": sum(errors.values()) / len(errors)}


def severity_table(results: list[CorruptionResult]) -> str:
    """A Markdown table: one row per corruption, its accuracy at each severity and their mean; the clean accuracy
    above, the mean corruption accuracy below; '*' marks a set on which BatchNorm was re-estimated."""
    severities = sorted({r.severity for r in results if r.severity})
    cells = {(r.corruption, r.severity): f"{r.accuracy:.1%}{'*' if r.recalibrated else ''}" for r in results}
    clean = next(r for r in results if r.severity == 0)
    lines = ["| corruption | " + " | ".join(f"severity {s}" for s in severities) + " | mean |",
             "| --- |" + " ---: |" * (len(severities) + 1),
             f"| none (clean) | {cells[('clean', 0)]} |" + " |" * len(severities)]
    for corruption, mean in mean_accuracies(results).items():
        lines.append(f"| {corruption.replace('_', ' ')} | "
                     + " | ".join(cells[(corruption, s)] for s in severities) + f" | {mean:.1%} |")
    marked = sum(r.recalibrated for r in results if r.severity)
    lines.append(f"| **mean of all corrupted sets** |" + " |" * len(severities)
                 + f" **{mean_corruption_accuracy(results):.1%}** |")
    return "\n".join(lines) + (f"\n\n\\* BatchNorm statistics re-estimated on the set ({marked} of "
                               f"{len(results) - 1} sets; the clean set {'too' if clean.recalibrated else 'not'})."
                               if marked or clean.recalibrated else "")


def summarize(results: list[CorruptionResult]) -> dict:
    """The clean accuracy, the mean corruption accuracy, the worst corruption and its mean, the sets and images."""
    means = mean_accuracies(results)
    worst = min(means, key=means.get)
    return {"clean": results[0].accuracy, "mean_corruption_accuracy": mean_corruption_accuracy(results),
            "worst_corruption": worst.replace("_", " "), "worst_mean": means[worst], "sets": len(results) - 1,
            "recalibrated_sets": sum(r.recalibrated for r in results if r.severity),
            "images": results[0].images}


def save_results(results: list[CorruptionResult], path: str | os.PathLike) -> None:
    with atomic_write(path) as f:
        json.dump([r.to_dict() for r in results], f, indent=1)


def load_results(path: str | os.PathLike) -> list[CorruptionResult] | None:
    """The results ``save_results`` wrote, or None when the file cannot be read as such."""
    try:
        return [CorruptionResult(**row) for row in json.loads(open(path).read())]
    except (OSError, ValueError, TypeError):
        return None


@torch.no_grad()
def stem_response(model: nn.Module, images: Tensor, normalization: Normalization, sigma: float = 0.04,
                  seed: int = 0) -> dict[str, Tensor]:
    """Per filter of the stem's first conv (``model.stem[0]``): its gain (the filter's norm, what it multiplies
    white noise by), the standard deviation of its output on ``images`` (signal) and on the difference that Gaussian
    noise of ``sigma`` (of 1, on the pixels) makes (noise). A whitened stem pairs each filter with its
    negative: only the first of each pair is kept."""
    conv = model.stem[0]
    weight = conv.weight.detach().float().cpu()
    half = len(weight) // 2
    if half and torch.equal(weight[half:2 * half], -weight[:half]):  # whitened: filters and their negatives
        weight = weight[:half]
    clean = normalization(images.cpu()).float()
    noise = torch.randn(images.shape, generator=torch.Generator("cpu").manual_seed(seed), device="cpu") * sigma * 255
    noisy = normalization((images.cpu().float() + noise).round().clamp(0, 255).to(torch.uint8)).float()
    signal, difference = F.conv2d(clean, weight), F.conv2d(noisy, weight) - F.conv2d(clean, weight)
    return {"gain": weight.flatten(1).norm(dim=1), "signal": signal.std(dim=(0, 2, 3)),
            "noise": difference.std(dim=(0, 2, 3))}


def measured_runs(path: str | os.PathLike = MEASURED_FILE) -> dict:
    """The runs benchmarks/robustness.py measured: name -> how it trained, on which machine and date, and its
    results on the test images and on validation images, each way of predicting."""
    return json.loads(Path(path).read_text())


def remedies_table(entries: dict, baseline: str | None = None, scored: str = "test") -> str:
    """A Markdown table of every measured run and way of predicting: clean accuracy, mean corruption accuracy,
    the worst corruption, and the mean corruption error relative to ``baseline``'s run as trained."""
    base = None
    if baseline:
        base = [CorruptionResult(**r) for r in entries[baseline]["scored"][scored]["results"]["as trained"]]
    lines = [f"| run | epochs | predicted | clean | mean corruption accuracy | worst corruption (its mean) | "
             f"mCE{f' (vs {baseline})' if baseline else ''} |",
             "| --- | ---: | --- | ---: | ---: | --- | ---: |"]
    for name, entry in entries.items():
        if scored not in entry["scored"]:
            continue
        for mode, rows in entry["scored"][scored]["results"].items():
            s = entry["scored"][scored]["summary"][mode]
            mce = f"{corruption_errors([CorruptionResult(**r) for r in rows], base)['mCE']:.2f}" if base else "-"
            lines.append(f"| {name} | {entry['epochs']} | {mode} | {s['clean']:.1%} | "
                         f"{s['mean_corruption_accuracy']:.1%} | {s['worst_corruption']} ({s['worst_mean']:.1%}) | "
                         f"{mce} |")
    return "\n".join(lines)
