"""What residual connections do to gradients, measured: one batch forward and backward through a
network, and the size of the gradient that reaches each part of it.

Notebook 02 compares the reference network with and without its shortcuts, and with and without
the zero-initialized last BatchNorm of each block; notebook 03 looks at one batch's gradient of a
convolution before and after Muon orthogonalizes it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .budget import group_of
from .config import ModelConfig
from .data import Normalization
from .model import BasicBlock, build_model


def backward_one_batch(model: nn.Module, images: Tensor, labels: Tensor, normalization: Normalization) -> None:
    """One batch forward and backward in training mode: each parameter's ``grad`` is then that batch's gradient."""
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(normalization(images)), labels).backward()


def gradient_norms(model: nn.Module, images: Tensor, labels: Tensor, normalization: Normalization) -> dict[str, float]:
    """The gradient's norm on each part's weights (stem, stage i, head) after one batch, in training mode."""
    backward_one_batch(model, images, labels, normalization)
    squares: dict[str, float] = {}
    for name, parameter in model.named_parameters():
        if parameter.grad is not None:
            group = group_of(name)
            squares[group] = squares.get(group, 0.0) + parameter.grad.pow(2).sum().item()
    return {group: total ** 0.5 for group, total in squares.items()}


def residual_variants(config: ModelConfig, seed: int = 0) -> dict[str, nn.Module]:
    """The network of ``config`` as built (shortcuts, each block's last BatchNorm scale at 0), with that
    scale at 1 instead, and without shortcuts (scale at 1: at 0 a plain block would pass nothing on);
    the same starting weights otherwise."""
    variants = {}
    for name, residual, zero_last_norm in (("shortcuts, last BatchNorm at 0 (as built)", True, True),
                                           ("shortcuts, last BatchNorm at 1", True, False),
                                           ("no shortcuts, last BatchNorm at 1", False, False)):
        torch.manual_seed(seed)
        model = build_model(config)
        for block in (m for m in model.modules() if isinstance(m, BasicBlock)):
            block.residual = residual
            if not zero_last_norm:
                nn.init.ones_(block.bn2.weight)
        variants[name] = model
    return variants
