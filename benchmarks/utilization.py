"""How near a training run comes to this machine's practical peak: training FLOPs per image, counted by
torch.utils.flop_counter, and the FLOP/s of a large matrix product timed here in the autocast dtype.

A run's utilization is its FLOPs per training image times its images/s, over that peak. Where a stem's bias freezes
part-way (all three networks of versus_airbench.py), the FLOPs per image are those of the two phases, weighted by the
share of the run each took: once nothing before the first stage learns, the backward pass stops there.
"""
from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cifar_resnet.device import Compute

MATMUL_SIZE = 4096


def matmul_peak(compute: Compute, size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """FLOP/s of a size x size matrix product in the run's autocast dtype (float32 without one): the best of
    ``repeats``, after a warm-up."""
    dtype = compute.dtype or torch.float32
    a, b = (torch.randn(size, size, device=compute.device).to(dtype) for _ in range(2))
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        (a @ b).sum().item()  # .item() waits for the device
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def run_flops_per_image(model: nn.Module, stem_bias: str, learns_until: float) -> float:
    """Training FLOPs per image over a run in which the parameter named ``stem_bias`` learns for the first
    ``learns_until`` of it and the rest of ``model``'s trainable parameters throughout."""
    learning, frozen = (training_flops_per_image(model, {stem_bias: learns}) for learns in (True, False))
    return learns_until * learning + (1 - learns_until) * frozen


def training_flops_per_image(model: nn.Module, learns: dict[str, bool] | None = None, images: int = 2) -> int:
    """FLOPs of one training image through ``model`` (a copy, in training mode): forward, and backward to every
    parameter that trains (``learns``: {name: whether it does} for those to set first); a multiply-add counts as 2."""
    net = copy.deepcopy(model).float().train()
    for name, learning in (learns or {}).items():
        net.get_parameter(name).requires_grad_(learning)
    device = next(net.parameters()).device
    counter = FlopCounterMode(display=False)
    with counter:
        net(torch.randn(images, 3, 32, 32, device=device)).sum().backward()
    return counter.get_total_flops() // images
