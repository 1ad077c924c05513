"""Test-time adaptation: the network meets the images it is to predict before it predicts them, without labels.

``predict_adapted`` is what ``predict`` and notebook 05 do: predict, check the images for a shift from the
training images (``shift.check_shift``), and when the check fires, re-estimate BatchNorm's statistics on those
images and predict again. ``entropy_minimized`` (TENT, Wang et al., ICLR 2021) is the stronger remedy measured
beside it (benchmarks/robustness.py).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ADAPT_MODES
from .data import Normalization
from .device import Compute
from .evaluate import predict_logits
from .shift import ShiftCheck, check_shift


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: Tensor, normalization: Normalization,
                          batch_size: int = 500) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are measured on ``images`` (uint8, no labels
    needed): an equal-weight average over their batches, as if the network had trained on them."""
    model = copy.deepcopy(model)
    for norm in batchnorms(model):
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    device = next(model.parameters()).device
    model.train()
    for start in range(0, len(images), batch_size):
        model(normalization(images[start:start + batch_size].to(device)))
    return model.eval()


def entropy_minimized(model: nn.Module, images: Tensor, normalization: Normalization, *, lr: float = 1e-3,
                      batch_size: int = 200, seed: int = 0) -> nn.Module:
    """TENT: a copy of ``model`` whose BatchNorm shifts (and scales, where they learn) took one Adam step per batch
    of ``images`` down the mean entropy of its predictions, BatchNorm normalizing by each batch's statistics;
    then its running statistics re-estimated on all the images (``recalibrate_batchnorm``)."""
    model = copy.deepcopy(model)
    learnable = [p for norm in batchnorms(model) for p in norm.parameters() if p.requires_grad]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in learnable:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(learnable, lr=lr, betas=(0.9, 0.999))
    device = next(model.parameters()).device
    order = torch.randperm(len(images), generator=torch.Generator("cpu").manual_seed(seed), device="cpu")
    model.train()
    for start in range(0, len(images), batch_size):
        x = normalization(images[order[start:start + batch_size]].to(device))
        log_p = F.log_softmax(model(x).float(), dim=1)
        entropy = -(log_p.exp() * log_p).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        entropy.backward()
        optimizer.step()
    return recalibrate_batchnorm(model, images, normalization)


@dataclass(frozen=True)
class AdaptedPrediction:
    """Logits for a set of images, the shift check that decided whether to adapt, and what was done."""

    logits: Tensor
    shift: ShiftCheck
    recalibrated: bool
    images: int

    def action(self) -> str:
        """What was done, in one line."""
        if self.recalibrated:
            return f"BatchNorm statistics re-estimated on the {self.images:,} test images"
        return "nothing changed: the model predicted with the BatchNorm statistics of its training"


def predict_adapted(model: nn.Module, images: Tensor, normalization: Normalization,
                    class_shares: list[float] | None = None, *, adapt: str = "auto", tta: bool | str = False,
                    batch_size: int = 1024, compute: Compute | None = None) -> AdaptedPrediction:
    """Predict uint8 ``images``; with ``adapt`` 'auto', re-estimate BatchNorm on them when they look shifted from
    the training images and predict again ('always': whatever the check says; 'off': never).

    A network without BatchNorm is never changed. ``class_shares``: the shares the model predicts on training
    images (a checkpoint's), for the check.
    """
    if adapt not in ADAPT_MODES:
        raise ValueError(f"adapt = {adapt!r}: use one of {ADAPT_MODES}")
    logits = predict_logits(model, images, normalization, batch_size=batch_size, tta=tta, compute=compute)
    shift = check_shift(images, logits.argmax(1), normalization, class_shares)
    recalibrate = bool(batchnorms(model)) and (adapt == "always" or (adapt == "auto" and shift.shifted))
    if recalibrate:
        logits = predict_logits(recalibrate_batchnorm(model, images, normalization), images, normalization,
                                batch_size=batch_size, tta=tta, compute=compute)
    return AdaptedPrediction(logits, shift, recalibrate, len(images))
