"""airbench94_muon (the airbench repository's current 94% script: 94.01% in 2.59 s on an A100), re-implemented as a
second baseline for this CPU, with its training laid over a time budget as `cpu-fast`'s and airbench94's are.

From the public repository's airbench94_muon.py. The network is airbench94's (benchmarks/airbench94.py: the frozen
2x2 whitening of 5,000 training images, epsilon 5e-4, three conv groups of widths 64, 256, 256, BatchNorm scales
fixed at 1), except the head: a bias-free linear layer whose initial weights are scaled to standard deviation 1,
its logits divided by the 256 features. Training, 8 epochs of batch 2,000:
- Muon (lr 0.24, momentum 0.6, Nesterov, three Newton-Schulz steps, each filter bank rescaled to norm
  sqrt(out_channels) before its step, no weight decay) on the convolution filters;
- Nesterov SGD (momentum 0.85; lr 0.053 for the biases, 0.67 for the head; weight decay 2e-6 per image of the
  batch, divided by each group's lr) for the whitening bias, the BatchNorm biases and the head;
- every rate falls linearly from its peak to 0, with no warmup; the whitening bias trains for the first 3 of the
  8 epochs, its rate falling to 0 over them;
- label smoothing 0.2 on a summed loss, airbench94's alternating flips and 2-pixel reflect-padded translations,
  no lookahead;
- test-time augmentation level 2 (`tta="flip-shift"` of `cifar_resnet.evaluate`).

Where airbench counts steps of its 8 epochs, this port counts the share of the time budget done. bf16 autocast and
channels_last on the CPU, as `cpu-fast` trains; Muon's Newton-Schulz iterations run in bf16, as airbench's do.
"""
from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from airbench94 import WIDTHS, ConvGroup, batches, init_whitening, prepared_images, run_record
from cifar_resnet import Normalization
from cifar_resnet.device import Compute
from cifar_resnet.muon import Muon

EPOCHS = 8  # airbench94_muon's length, used to place the whitening bias's training on the time budget
BATCH = 2000
MUON_LR, MUON_MOMENTUM = 0.24, 0.6
BIAS_LR, HEAD_LR, MOMENTUM = 0.053, 0.67, 0.85
WEIGHT_DECAY_PER_IMAGE = 2e-6
LABEL_SMOOTHING = 0.2
WHITEN_BIAS_UNTIL = 3 / EPOCHS


class Head(nn.Linear):
    """A bias-free linear layer on the pooled features, started at weight standard deviation 1, its logits divided
    by the number of features."""

    def __init__(self, features: int, classes: int = 10):
        super().__init__(features, classes, bias=False)
        self.weight.data /= self.weight.data.std()

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) / self.in_features


def make_net() -> nn.Sequential:
    whiten_width = 2 * 3 * 2 ** 2
    net = nn.Sequential(nn.Conv2d(3, whiten_width, kernel_size=2, padding=0, bias=True), nn.GELU(),
                        ConvGroup(whiten_width, WIDTHS[0]), ConvGroup(WIDTHS[0], WIDTHS[1]),
                        ConvGroup(WIDTHS[1], WIDTHS[2]), nn.MaxPool2d(3), nn.Flatten(), Head(WIDTHS[2]))
    net[0].weight.requires_grad = False
    return net.to(memory_format=torch.channels_last)


def make_optimizer(net: nn.Sequential, batch: int, compute: Compute) -> tuple[Muon, dict]:
    """Muon for the conv filters, Nesterov SGD for the rest; also the whitening bias's group, which has its own
    schedule."""
    weight_decay = WEIGHT_DECAY_PER_IMAGE * batch
    whiten_bias = dict(params=[net[0].bias], lr=BIAS_LR, weight_decay=weight_decay / BIAS_LR)
    norm_biases = [p for name, p in net.named_parameters() if "norm" in name and p.requires_grad]
    filters = [p for p in net.parameters() if p.ndim == 4 and p.requires_grad]
    groups = [whiten_bias,
              dict(params=norm_biases, lr=BIAS_LR, weight_decay=weight_decay / BIAS_LR),
              dict(params=[net[-1].weight], lr=HEAD_LR, weight_decay=weight_decay / HEAD_LR),
              dict(params=filters, lr=MUON_LR, orthogonalize=True, muon_momentum=MUON_MOMENTUM)]
    for group in groups:
        group["initial_lr"] = group["lr"]
    optimizer = Muon(groups, lr=MUON_LR, momentum=MOMENTUM, nesterov=True, matmul_dtype=compute.matmul_dtype)
    return optimizer, optimizer.param_groups[0]


def train(images: Tensor, labels: Tensor, normalization: Normalization, minutes: float, seed: int = 0,
          compute: Compute | None = None) -> tuple[nn.Module, dict]:
    """airbench94_muon trained for ``minutes`` on uint8 ``images``; returns the model (taking uint8 images
    normalized by ``normalization``, as `cifar_resnet.evaluate` feeds it) and what the run did."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    compute = compute or Compute.choose()
    start = time.perf_counter()
    x = prepared_images(images, normalization, generator)
    net = make_net()
    init_whitening(net[0], normalization(images[:5000]))
    batch = min(BATCH, len(images))  # smoke runs have fewer images than one batch
    optimizer, whiten_bias = make_optimizer(net, batch, compute)
    criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING, reduction="sum")
    budget, steps, epoch, done = minutes * 60, 0, 0, 0.0
    while done < 1:
        net.train()
        for xb, yb in batches(x, labels, epoch, batch, generator):
            net[0].bias.requires_grad = done < WHITEN_BIAS_UNTIL
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * (1 - done)
            whiten_bias["lr"] = whiten_bias["initial_lr"] * max(0.0, 1 - done / WHITEN_BIAS_UNTIL)
            with compute.autocast():
                loss = criterion(net(xb).float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            done = (time.perf_counter() - start) / budget
            if done >= 1:
                break
        epoch += 1
    return net.eval(), run_record(steps, batch, len(images), start)
