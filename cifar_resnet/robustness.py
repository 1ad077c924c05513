"""Accuracy on corrupted copies of the test images, made on the fly in the spirit of CIFAR-10-C, and
one remedy: re-estimating BatchNorm's statistics on the unlabeled images to be predicted.

A Kaggle test set that differs from CIFAR-10's (other cameras, other processing) costs accuracy the
way these corruptions do; the table shows how much, and how much the remedy gets back, on images
whose labels are known. It does not show what the remedy does on the real leaderboard.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torchvision.transforms.v2 import functional as TF

from .data import Normalization
from .evaluate import evaluate

CORRUPTIONS = ("noise", "blur", "brightness", "contrast", "colour shift", "jpeg")


def corrupt(images: Tensor, kind: str, generator: torch.Generator | None = None) -> Tensor:
    """uint8 images (N, 3, 32, 32) with one corruption at a middle severity.

    noise: Gaussian, sigma 20/255; blur: Gaussian, sigma 1 pixel; brightness: x1.5; contrast: x0.5;
    colour shift: red +30, blue -30 of 255; jpeg: quality 10.
    """
    if kind == "noise":
        noise = torch.randn(images.shape, generator=generator, device=images.device) * 20
        return (images.float() + noise).round().clamp(0, 255).to(torch.uint8)
    if kind == "blur":
        return TF.gaussian_blur(images, kernel_size=[5, 5], sigma=[1.0, 1.0])
    if kind == "brightness":
        return TF.adjust_brightness(images, 1.5)
    if kind == "contrast":
        return TF.adjust_contrast(images, 0.5)
    if kind == "colour shift":
        offset = torch.tensor([30.0, 0.0, -30.0], device=images.device).view(1, 3, 1, 1)
        return (images.float() + offset).clamp(0, 255).to(torch.uint8)
    if kind == "jpeg":
        return TF.jpeg(images.cpu(), quality=10).to(images.device)
    raise ValueError(f"corruption {kind!r}: use one of {CORRUPTIONS}")


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: Tensor, normalization: Normalization,
                          batch_size: int = 500) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are measured on ``images`` (no labels
    needed): an equal-weight average over their batches, as if the network had trained on them."""
    model = copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    device = next(model.parameters()).device
    model.train()
    for start in range(0, len(images), batch_size):
        model(normalization(images[start:start + batch_size].to(device)))
    return model.eval()


def robustness_table(model: nn.Module, images: Tensor, labels: Tensor, normalization: Normalization,
                     seed: int = 0) -> list[dict]:
    """Accuracy on the clean images and under each corruption: as trained, and with BatchNorm's
    statistics re-estimated on the (corrupted) images themselves."""
    rows = []
    for kind in ("clean", *CORRUPTIONS):
        corrupted = images if kind == "clean" else corrupt(images, kind, torch.Generator(images.device).manual_seed(seed))
        recalibrated = recalibrate_batchnorm(model, corrupted, normalization)
        rows.append({"corruption": kind,
                     "accuracy": evaluate(model, corrupted, labels, normalization).accuracy,
                     "recalibrated": evaluate(recalibrated, corrupted, labels, normalization).accuracy})
    return rows
