"""Muon: momentum whose update is orthogonalized, for the convolution filters (after Keller Jordan's Muon).

Each step, a filter bank's momentum, seen as a matrix (out_channels, in_channels * k * k), is replaced by
the nearest matrix with all singular values about 1 (a few Newton-Schulz iterations, no SVD): every
direction of the filters moves by about the same amount, however unevenly the gradient spreads over them.
The filters are also scaled back to a fixed norm before each step, which takes weight decay's place: a
BatchNorm after each convolution makes the network blind to that norm. Every other parameter group
steps as SGD with (Nesterov) momentum and weight decay.
"""
from __future__ import annotations

import torch
from torch import Tensor

NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)  # quintic coefficients: steep at 0, so few iterations suffice
NEWTON_SCHULZ_STEPS = 3


def orthogonalize(matrix: Tensor, steps: int = NEWTON_SCHULZ_STEPS, dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """About U V^T for ``matrix`` = U S V^T: its singular values pushed towards 1 (into roughly [0.5, 1.5]),
    by quintic Newton-Schulz iterations in ``dtype`` on the smaller Gram matrix. bfloat16 is Muon's own
    choice; the iterations tolerate a 16-bit dtype because they only need the singular values roughly right."""
    a, b, c = NEWTON_SCHULZ
    x = matrix.to(dtype)
    x = x / (x.norm() + 1e-7)  # every singular value <= 1, where the iteration converges
    wide = x.size(0) <= x.size(1)
    if not wide:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).to(matrix.dtype)


class Muon(torch.optim.SGD):
    """SGD, except for parameter groups with ``orthogonalize=True`` (conv filters, each followed by BatchNorm).

    For those: momentum ``muon_momentum`` (Nesterov), the filters rescaled to norm sqrt(out_channels),
    then a step of ``lr`` along the orthogonalized momentum, orthogonalized in ``matmul_dtype`` (the device's
    fast one: ``device.matmul_dtype``). Their ``weight_decay`` is not used.
    """

    def __init__(self, params, *, matmul_dtype: torch.dtype = torch.bfloat16, **sgd_settings):
        super().__init__(params, **sgd_settings)
        self.matmul_dtype = matmul_dtype

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if not group.get("orthogonalize"):
                continue
            for p in group["params"]:
                if p.grad is not None:
                    self._orthogonal_step(p, group["lr"], group["muon_momentum"])
                    p.grad = None  # stepped: SGD's step below leaves it alone
        return super().step(closure)

    def _orthogonal_step(self, p: Tensor, lr: float, momentum: float) -> None:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buffer = state["momentum_buffer"].mul_(momentum).add_(p.grad)
        update = p.grad.add(buffer, alpha=momentum)  # Nesterov: look one momentum step ahead
        p.mul_(len(p) ** 0.5 / p.norm())
        p.add_(orthogonalize(update.flatten(1), dtype=self.matmul_dtype).view_as(p), alpha=-lr)
