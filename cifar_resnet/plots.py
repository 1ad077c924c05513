"""Every figure the notebooks show, drawn with matplotlib; each function returns its Figure."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from .budget import ParameterReport
from .data import CLASSES
from .evaluate import Evaluation
from .files import atomic_write
from .run_folder import has_validation
from .schedule import lr_at


def _show(ax, image: torch.Tensor, title: str | None = None, color: str = "black") -> None:
    ax.imshow(image.permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8, color=color)


def image_grid(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
               colors: Sequence[str] | None = None, size: float = 1.3) -> Figure:
    """uint8 images (N, 3, 32, 32) in a grid, with optional titles (and title colours)."""
    nrows = max(1, -(-len(images) // ncols))
    title_lines = max((t.count("\n") + 1 for t in titles), default=0) if titles else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.2 * title_lines)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(images):
            _show(ax, images[i], titles[i] if titles else None, colors[i] if colors else "black")
        else:
            ax.axis("off")
    fig.tight_layout()
    return fig


def class_samples(images: torch.Tensor, labels: torch.Tensor, per_class: int = 8,
                  classes: Sequence[str] = CLASSES) -> Figure:
    """One row per class with its first ``per_class`` images."""
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 1.1, len(classes) * 1.1), squeeze=False)
    for c, name in enumerate(classes):
        members = torch.nonzero(labels == c).flatten()[:per_class]
        for j, ax in enumerate(axes[c]):
            if j < len(members):
                _show(ax, images[members[j]])
            else:
                ax.axis("off")
        axes[c, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def _grouped_bars(ax, series: dict[str, Sequence[float]], categories: Sequence[str], rotation: int = 0,
                  legend_size: float | None = None) -> None:
    """One bar group per category, one bar per series in it, and the legend beside the bars, never over them."""
    width = 0.8 / len(series)
    x = np.arange(len(categories))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x + i * width, values, width, label=label)
    ax.set_xticks(x + width * (len(series) - 1) / 2, list(categories), rotation=rotation)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=legend_size)


def class_counts(labels_by_split: dict[str, torch.Tensor], classes: Sequence[str] = CLASSES) -> Figure:
    """Images per class for each split, as grouped bars."""
    fig, ax = plt.subplots(figsize=(9, 3))
    counts = {split: torch.bincount(labels, minlength=len(classes)).numpy() for split, labels in labels_by_split.items()}
    _grouped_bars(ax, {f"{split} ({c.sum():,})": c for split, c in counts.items()}, classes, rotation=30)
    ax.set_ylabel("images")
    fig.tight_layout()
    return fig


def augmentation_gallery(images: torch.Tensor, augmentations: dict[str, Callable[[torch.Tensor], torch.Tensor]]) -> Figure:
    """The same images (first row) under each augmentation (one row each)."""
    rows = {"original": images, **{name: fn(images) for name, fn in augmentations.items()}}
    fig, axes = plt.subplots(len(rows), len(images), figsize=(len(images) * 1.2, len(rows) * 1.25), squeeze=False)
    for r, (name, batch) in enumerate(rows.items()):
        for j, ax in enumerate(axes[r]):
            _show(ax, batch[j])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def epochs_done(history: list[dict]) -> list[float]:
    """Where each history row sits in epochs: a last epoch cut short by a time budget counts as the
    fraction of its steps that ran, not as a whole epoch."""
    steps = [h["step"] for h in history]
    per_epoch = max((b - a for a, b in zip([0, *steps], steps)), default=1) or 1  # the longest epoch is a whole one
    return [step / per_epoch for step in steps]


def training_curves(history: list[dict], fig: Figure | None = None) -> Figure:
    """Loss and accuracy per epoch, training and validation (training only for a run without a split)."""
    fig = fig or plt.figure(figsize=(10, 3.5))
    fig.clear()
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = epochs_done(history)
    validated = [h for h in history if has_validation(h)]
    for split, style in (("train", "-o"), ("val", "-s")) if validated else (("train", "-o"),):
        loss_ax.plot(epochs, [h[f"{split}_loss"] for h in history], style, ms=3, label=split)
        acc_ax.plot(epochs, [100 * h[f"{split}_acc"] for h in history], style, ms=3, label=split)
    loss_ax.set(xlabel="epoch", ylabel="loss (with label smoothing)", title="loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)",
               title="accuracy" if validated or not history else "accuracy (no validation split)")
    if validated:
        best = max(validated, key=lambda h: h["val_acc"])
        acc_ax.annotate(f"{100 * best['val_acc']:.1f}%", (epochs[history.index(best)], 100 * best["val_acc"]),
                        textcoords="offset points", xytext=(-10, -14), fontsize=8)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def lr_schedule(history: list[dict], peak: float, warmup: float, schedule: str = "cosine") -> Figure:
    """The learning rate over training: the schedule as a curve, each epoch's last value as a dot."""
    fig, ax = plt.subplots(figsize=(6, 3))
    progress = np.linspace(0, 1, 400)
    total_steps = history[-1]["step"] if history else 1
    ax.plot(progress * total_steps, [lr_at(p, peak, warmup, schedule) for p in progress],
            label=f"warmup + {schedule} decay")
    ax.plot([h["step"] for h in history], [h["lr"] for h in history], "o", ms=4, label="end of each epoch")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title="learning-rate schedule")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(evaluation: Evaluation, classes: Sequence[str] = CLASSES) -> Figure:
    """Row-normalized confusion matrix: row = true class, column = predicted class."""
    counts = evaluation.confusion.double()
    rates = (counts / counts.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if rates[i, j] >= 0.005:
                ax.text(j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix (%), accuracy {100 * evaluation.accuracy:.2f}%")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def per_class_accuracy(evaluations: dict[str, Evaluation]) -> Figure:
    """Accuracy of each class, one bar group per evaluation (e.g. plain vs flip TTA)."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    _grouped_bars(ax, {f"{name} ({100 * ev.accuracy:.2f}%)": [100 * v for v in ev.per_class.values()]
                       for name, ev in evaluations.items()},
                  list(next(iter(evaluations.values())).per_class), rotation=30)
    ax.set(ylabel="accuracy (%)", ylim=(0, 100), title="accuracy per class")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def confident_mistakes(images: torch.Tensor, evaluation: Evaluation, k: int = 16,
                       classes: Sequence[str] = CLASSES) -> Figure:
    """The ``k`` wrong predictions the model was most sure of: 'predicted (prob) / true'."""
    idx = evaluation.most_confident_mistakes(k)
    titles = [f"{classes[evaluation.predictions[i]]} {100 * evaluation.probabilities[i].max():.0f}%\n"
              f"true: {classes[evaluation.labels[i]]}" for i in idx]
    fig = image_grid(images[idx], titles, ncols=8, colors=["firebrick"] * len(idx), size=1.5)
    fig.suptitle("most confident mistakes", y=1.02)
    return fig


def robustness(results: dict[str, list], title: str = "accuracy on corrupted test images") -> Figure:
    """Each corruption's accuracy averaged over its severities, one bar per way of predicting (``results``: label ->
    ``robustness.corruption_results``), with each way's clean accuracy as a dashed line."""
    from .robustness import mean_accuracies

    means = {label: mean_accuracies(rows) for label, rows in results.items()}
    names = list(next(iter(means.values())))
    fig, ax = plt.subplots(figsize=(10, 3.4))
    _grouped_bars(ax, {label: [100 * m[c] for c in names] for label, m in means.items()},
                  [c.replace("_", " ") for c in names], rotation=30, legend_size=8)
    for (label, rows), color in zip(results.items(), plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        ax.axhline(100 * rows[0].accuracy, color=color, linestyle="--", linewidth=1)
    ax.set(ylabel="mean over severities 1-5 (%)", ylim=(0, 100), title=title + " (dashed: clean)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def stem_noise(response: dict[str, torch.Tensor], sigma: float) -> Figure:
    """The stem's filters, the patch direction of most variance first (the smallest gain): each filter's gain (its
    norm) and, measured on images, the spread of its output on them against that of its output on added Gaussian
    noise (``robustness.stem_response``)."""
    order = torch.argsort(response["gain"])
    x = np.arange(1, len(order) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    left.bar(x, response["gain"][order].numpy(), color="tab:gray")
    left.set(yscale="log", xlabel="stem filter (smallest gain first)", ylabel="gain (filter norm)",
             title="how much each filter multiplies white noise")
    right.plot(x, response["signal"][order].numpy(), "o-", label="the images")
    right.plot(x, response["noise"][order].numpy(), "s-", label=f"Gaussian noise, sigma {sigma:g} (of 1)")
    right.set(yscale="log", xlabel="stem filter (smallest gain first)", ylabel="std of the filter's output",
              title="signal and noise after the stem")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def experiment(rows: list[dict], title: str) -> Figure:
    """Validation accuracy of each variant of an experiment (``experiments.compare``'s rows), plain and with
    test-time augmentation, one bar pair per variant from top to bottom, labelled with its epochs."""
    trained = [r for r in rows if "diverged" not in r]
    fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(trained)))
    y = np.arange(len(trained))[::-1]
    for shift, key, label in ((0.2, "val_acc", "validation"), (-0.2, "val_acc_tta", "with flip-shift TTA")):
        bars = ax.barh(y + shift, [100 * r[key] for r in trained], 0.4, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
    ax.set_yticks(y, [f"{r['label']} ({r['epochs']:g} epochs)" for r in trained])
    low = min(100 * r["val_acc"] for r in trained)
    ax.set(xlabel="accuracy on the validation split (%)", xlim=(max(0.0, low - 10), 100), title=title)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    return fig


def singular_values(spectra: dict[str, torch.Tensor], title: str) -> Figure:
    """Each matrix's singular values, largest first, as fractions of its largest (log scale): how evenly a
    step spreads over its directions."""
    fig, ax = plt.subplots(figsize=(7, 3))
    for label, values in spectra.items():
        values = values.sort(descending=True).values
        ax.plot(np.arange(1, len(values) + 1), (values / values[0]).numpy(), label=label)
    ax.set(yscale="log", xlabel="direction (singular value, largest first)", ylabel="share of the largest",
           title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gradient_norms(norms: dict[str, dict[str, float]]) -> Figure:
    """The gradient's norm on each part of the network, one bar group per variant (log scale)."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    parts = list(next(iter(norms.values())))
    _grouped_bars(ax, {variant: [by_part.get(p, 0.0) for p in parts] for variant, by_part in norms.items()}, parts,
                  legend_size=8)
    ax.set(yscale="log", ylabel="gradient norm", title="gradient reaching each part after one batch")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def budget_scaling(sweeps: dict[str, list[tuple[float, ParameterReport]]], budget: int) -> Figure:
    """Parameters (bars, left axis) and forward FLOPs (line, right axis) along each sweep.

    ``sweeps`` maps an x-axis label to (x value, report) pairs, e.g. a width multiplier or blocks.
    """
    fig, axes = plt.subplots(1, len(sweeps), figsize=(5.5 * len(sweeps), 3.8), squeeze=False)
    for ax, (label, points) in zip(axes[0], sweeps.items()):
        xs = [f"{x:g}" for x, _ in points]
        totals = [r.total / 1e6 for _, r in points]
        colors = ["#2e7d32" if r.fits_budget else "#c62828" for _, r in points]
        ax.bar(xs, totals, color=colors, alpha=0.8)
        ax.axhline(budget / 1e6, color="black", ls="--", lw=1, label=f"budget {budget / 1e6:g}M")
        ax.set(xlabel=label, ylabel="parameters (millions)")
        ax.legend(loc="upper left", fontsize=8)
        flops_ax = ax.twinx()
        flops_ax.plot(xs, [r.flops / 1e9 for _, r in points], "o-", color="#1565c0")
        flops_ax.set_ylabel("forward GFLOPs per image", color="#1565c0")
    fig.tight_layout()
    return fig


def reliability_diagram(confidence: torch.Tensor, accuracy: torch.Tensor, count: torch.Tensor) -> Figure:
    """Accuracy against confidence per confidence bin (``evaluate.calibration_bins``' three tensors) beside the
    diagonal a calibrated model would follow, with the expected calibration error in the title and each bin's share
    of the images below."""
    confidence, accuracy, count = (torch.as_tensor(t).double().cpu().numpy() for t in (confidence, accuracy, count))
    bins = len(count)
    centres = (np.arange(bins) + 0.5) / bins
    fig, (ax, share) = plt.subplots(2, 1, figsize=(5, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    held = count > 0
    ax.bar(centres[held], accuracy[held], 1 / bins, edgecolor="black", label="accuracy")
    ax.bar(centres[held], confidence[held] - accuracy[held], 1 / bins, bottom=accuracy[held], color="#ef9a9a",
           alpha=0.6, label="gap to the mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ece = float((count / max(count.sum(), 1) * np.abs(accuracy - confidence)).sum())
    ax.set(ylabel="accuracy in the bin", xlim=(0, 1), ylim=(0, 1), title=f"reliability: ECE {100 * ece:.2f}%")
    ax.legend(fontsize=8, loc="upper left")
    share.bar(centres, count / max(count.sum(), 1), 1 / bins, color="grey")
    share.set(xlabel="confidence (the top probability)", ylabel="images")
    fig.tight_layout()
    return fig


def optimizer_paths(paths: dict[str, torch.Tensor], loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    title: str) -> Figure:
    """Paths (steps, 2) of optimizers over the contours of a 2-parameter ``loss(x, y)``."""
    every = torch.cat(list(paths.values()))
    low, high = every.min(0).values - 0.5, every.max(0).values + 0.5
    x, y = torch.meshgrid(torch.linspace(float(low[0]), float(high[0]), 200, device="cpu"),
                          torch.linspace(float(low[1]), float(high[1]), 200, device="cpu"), indexing="xy")
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.contour(x.numpy(), y.numpy(), loss(x, y).numpy(), levels=15, colors="grey", linewidths=0.5)
    for label, path in paths.items():
        ax.plot(path[:, 0].numpy(), path[:, 1].numpy(), ".-", ms=3, lw=1, label=f"{label} ({len(path) - 1} steps)")
    ax.plot([0], [0], "k*", ms=10)
    ax.set(xlabel="weight 1", ylabel="weight 2", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lines(series: dict[str, Sequence[float]], xlabel: str, ylabel: str, title: str, log: bool = False) -> Figure:
    """One line per series of values, at x = 0, 1, 2, ... (a learning rate per step, a loss per step)."""
    fig, ax = plt.subplots(figsize=(7, 3))
    for label, values in series.items():
        ax.plot(np.arange(len(values)), values, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, yscale="log" if log else "linear", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save ``fig`` as PNG atomically (a report never picks up a half-written image)."""
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


class LiveCurves:
    """An ``on_epoch`` callback for ``fit`` that redraws the training curves in place in a notebook."""

    def __init__(self):
        self.fig = plt.figure(figsize=(10, 3.5))
        plt.close(self.fig)  # shown through the display handle only, not again at the end of the cell
        self.handle = None

    def __call__(self, history: list[dict]) -> None:
        from IPython.display import display

        training_curves(history, self.fig)
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)
