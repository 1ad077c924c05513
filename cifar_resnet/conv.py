"""The networks' convolution: ``nn.Conv2d``, with a faster weight gradient on tiny feature maps on the CPU.

On a CPU, oneDNN spends more than half of a 3x3 convolution's training time on a 3x3 map (the last stage of
airbench's layout) on its weight gradient, though that is a third of the multiply-adds. The same gradient is one
matrix product: the nine shifted copies of the padded input, side by side, against the output's gradient. ``Conv2d``
takes that way where it pays, and ``nn.Conv2d``'s everywhere else: the forward pass and the input's gradient are
always oneDNN's. For cpu-fast's two 3x3-map convolutions it halves their forward and backward time (30.5 and 29.6 ms
to 14.7 and 14.0 for 512 images of 256 channels: benchmarks/small_map_conv.py, a 2-core Intel Xeon, 2026-12-06).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SMALL_MAP = 9  # pixels per map up to which the weight gradient is a matrix product: 3x3, airbench's last stage


def shifted_copies(x: Tensor) -> Tensor:
    """The 3x3 neighbourhood of every pixel of ``x`` (N, C, H, W), zero-padded: (N * H * W, 9 * C), ordered
    (row offset, column offset, channel)."""
    n, c, h, w = x.shape
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 1, 1, 1))
    return torch.cat([padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], -1).view(n * h * w, 9 * c)


class SmallMapConv(torch.autograd.Function):
    """A 3x3 convolution (stride 1, padding 1, no bias) whose weight gradient is one matrix product."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, padding=1)  # in autocast's dtype under autocast, as nn.Conv2d's

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        xg = x.to(grad.dtype)  # the dtype the forward pass computed in
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad, xg, weight.to(grad.dtype), None, [1, 1], [1, 1], [1, 1],
                                                         False, [0, 0], 1, [True, False, False])[0].to(x.dtype)
        if ctx.needs_input_grad[1]:
            n, out_channels, h, w = grad.shape
            per_pixel = grad.permute(0, 2, 3, 1).reshape(n * h * w, out_channels)
            product = (per_pixel.T @ shifted_copies(xg)).view(out_channels, 3, 3, -1).permute(0, 3, 1, 2)
            grad_w = torch.empty_like(weight).copy_(product)  # the weight's dtype and memory format
        return grad_x, grad_w


class Conv2d(nn.Conv2d):
    """``nn.Conv2d``; a 3x3 one (stride 1, padding 1, no bias) that trains on a CPU on maps of at most SMALL_MAP
    pixels goes through ``SmallMapConv``, which gives the same gradients faster."""

    def forward(self, x: Tensor) -> Tensor:
        if self._small_map_pays(x):
            return SmallMapConv.apply(x, self.weight)
        return super().forward(x)

    def _small_map_pays(self, x: Tensor) -> bool:
        return (x.device.type == "cpu" and torch.is_grad_enabled() and self.weight.requires_grad
                and x.shape[-2] * x.shape[-1] <= SMALL_MAP and self.kernel_size == (3, 3) and self.stride == (1, 1)
                and self.padding == (1, 1) and self.dilation == (1, 1) and self.groups == 1 and self.bias is None
                and self.padding_mode == "zeros")
