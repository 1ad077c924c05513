"""airbench94 (Keller Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv 2404.00498), re-implemented
as a baseline for this CPU, with its training laid over a time budget as `cpu-fast`'s is.

From the paper and the public repository's airbench94.py: a whitening 2x2 convolution (24 filters from the
eigenvectors of 2x2 patches of 5,000 training images, frozen; its bias trains for the first 3 of 9.9 epochs),
GELU, three conv groups (conv 3x3 - max pool 2 - BatchNorm - GELU - conv 3x3 - BatchNorm - GELU; widths 64, 256,
256; convolutions identity-initialized, BatchNorm scales fixed at 1, momentum 0.6, eps 1e-12), a 3x3 max pool,
a bias-free linear layer and logits times 1/9. Training: batch 1,024, Nesterov SGD with airbench's decoupled
hyperparameters (lr 11.5 and weight decay 0.0153 per 1,024 examples, momentum 0.85, BatchNorm biases 64x faster),
label smoothing 0.2 on a summed loss, a triangular schedule (0.2 -> 1 at 23% -> 0.07), lookahead (every 5 steps
from epoch 3, decay 0.95^5 times progress^3, copied back at every epoch's end), random 2-pixel translations of
reflect-padded images and flips that alternate by epoch over a fixed random half. Its test-time augmentation
(level 2: mirror and a one-pixel translation each way, weighted 1/2, 1/4, 1/4) is `tta="flip-shift"` of
`cifar_resnet.evaluate`, which computes exactly those six views and weights.

Where airbench counts epochs (9.9 of them), this port counts the share of the time budget done: the schedule,
the lookahead's decay, when lookahead starts (3 / 9.9) and when the whitening bias freezes (3 / 9.9).
bf16 autocast and channels_last on the CPU, as `cpu-fast` trains.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cifar_resnet import Normalization
from cifar_resnet.device import Compute
from cifar_resnet.schedule import lr_at

EPOCHS = 9.9  # airbench94's length, used to place its epoch-based events on the time budget
BATCH = 1024
LR, WEIGHT_DECAY, MOMENTUM, BIAS_SCALER = 11.5, 0.0153, 0.85, 64.0
LABEL_SMOOTHING = 0.2
EMA_START, EMA_EVERY, EMA_BASE, EMA_POWER = 3 / EPOCHS, 5, 0.95, 3.0
WHITEN_BIAS_UNTIL = 3 / EPOCHS
PEAK_AT = 0.23  # the triangular schedule (0.2 -> 1 -> 0.07) is cifar_resnet's 'linear' one: lr_at
TRANSLATE = 2
WIDTHS = (64, 256, 256)


class BatchNorm(nn.BatchNorm2d):
    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=1 - 0.6)
        self.weight.requires_grad = False


class Conv(nn.Conv2d):
    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding="same", bias: bool = False):
        super().__init__(cin, cout, kernel_size, padding=padding, bias=bias)
        if self.bias is not None:
            self.bias.data.zero_()
        nn.init.dirac_(self.weight.data[:cin])  # an implicit residual: identity on the first channels


class Mul(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class ConvGroup(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.pool, self.norm1, self.activ1 = Conv(cin, cout), nn.MaxPool2d(2), BatchNorm(cout), nn.GELU()
        self.conv2, self.norm2, self.activ2 = Conv(cout, cout), BatchNorm(cout), nn.GELU()


def make_net() -> nn.Sequential:
    whiten_width = 2 * 3 * 2 ** 2
    net = nn.Sequential(Conv(3, whiten_width, kernel_size=2, padding=0, bias=True), nn.GELU(),
                        ConvGroup(whiten_width, WIDTHS[0]), ConvGroup(WIDTHS[0], WIDTHS[1]),
                        ConvGroup(WIDTHS[1], WIDTHS[2]), nn.MaxPool2d(3), nn.Flatten(),
                        nn.Linear(WIDTHS[2], 10, bias=False), Mul(1 / 9))
    net[0].weight.requires_grad = False
    return net.to(memory_format=torch.channels_last)


def init_whitening(layer: nn.Conv2d, images: Tensor, eps: float = 5e-4) -> None:
    """The whitening filters: eigenvectors of the 2x2 patches' covariance, scaled, with their negatives."""
    c, (h, w) = images.shape[1], layer.weight.shape[2:]
    patches = images.unfold(2, h, 1).unfold(3, w, 1).transpose(1, 3).reshape(-1, c, h, w).float()
    flat = patches.view(len(patches), -1)
    eigenvalues, eigenvectors = torch.linalg.eigh(flat.T @ flat / len(flat), UPLO="U")
    eigenvalues, eigenvectors = eigenvalues.flip(0).view(-1, 1, 1, 1), eigenvectors.T.reshape(c * h * w, c, h, w).flip(0)
    scaled = eigenvectors / torch.sqrt(eigenvalues + eps)
    layer.weight.data[:] = torch.cat((scaled, -scaled))


class Lookahead:
    def __init__(self, net: nn.Module):
        self.ema = {k: v.clone() for k, v in net.state_dict().items()}

    def update(self, net: nn.Module, decay: float) -> None:
        for ema, param in zip(self.ema.values(), net.state_dict().values()):
            if param.dtype.is_floating_point:
                ema.lerp_(param, 1 - decay)
                param.copy_(ema)


def batches(images: Tensor, labels: Tensor, epoch: int, batch: int, generator: torch.Generator):
    """One epoch of airbench's loader: a random translation of the padded images, all flipped in odd epochs."""
    n, size = len(images), images.shape[-1] - 2 * TRANSLATE
    shifts = torch.randint(0, 2 * TRANSLATE + 1, (n, 2), generator=generator)
    out = torch.empty(n, 3, size, size, dtype=images.dtype)
    for dy in range(2 * TRANSLATE + 1):
        for dx in range(2 * TRANSLATE + 1):
            mask = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[mask] = images[mask, :, dy:dy + size, dx:dx + size]
    if epoch % 2 == 1:
        out = out.flip(-1)
    order = torch.randperm(n, generator=generator)
    for i in range(n // batch):
        index = order[i * batch:(i + 1) * batch]
        yield out[index].contiguous(memory_format=torch.channels_last), labels[index]


def prepared_images(images: Tensor, normalization: Normalization, generator: torch.Generator) -> Tensor:
    """airbench's training images, prepared once: normalized, a random half mirrored (odd epochs mirror them all),
    reflect-padded for the translations."""
    x = normalization(images)
    flipped = torch.rand(len(x), generator=generator) < 0.5
    x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(-1), x)
    return F.pad(x, (TRANSLATE,) * 4, mode="reflect")


def run_record(steps: int, batch: int, train_images: int, start: float) -> dict:
    """What a run started at ``start`` (time.perf_counter) did."""
    seconds = time.perf_counter() - start
    return {"steps": steps, "images": steps * batch, "epochs": steps * batch / train_images, "seconds": seconds,
            "images_per_s": steps * batch / seconds}


def train(images: Tensor, labels: Tensor, normalization: Normalization, minutes: float, seed: int = 0,
          compute: Compute | None = None) -> tuple[nn.Module, dict]:
    """airbench94 trained for ``minutes`` on uint8 ``images``; returns the model (taking uint8 images normalized by
    ``normalization``, as `cifar_resnet.evaluate` feeds it) and what the run did."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    compute = compute or Compute.choose()
    start = time.perf_counter()
    x = prepared_images(images, normalization, generator)
    net = make_net()
    init_whitening(net[0], normalization(images[:5000]))
    batch = min(BATCH, len(images))  # smoke runs have fewer images than one batch
    kilostep = BATCH * (1 + 1 / (1 - MOMENTUM))
    lr, wd = LR / kilostep, WEIGHT_DECAY * batch / kilostep
    biases = [p for name, p in net.named_parameters() if "norm" in name and p.requires_grad]
    others = [p for name, p in net.named_parameters() if "norm" not in name and p.requires_grad]
    groups = [dict(params=biases, lr=lr * BIAS_SCALER, weight_decay=wd / (lr * BIAS_SCALER)),
              dict(params=others, lr=lr, weight_decay=wd / lr)]
    for group in groups:
        group["initial_lr"] = group["lr"]
    optimizer = torch.optim.SGD(groups, momentum=MOMENTUM, nesterov=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING, reduction="sum")
    budget, lookahead, steps, epoch, done = minutes * 60, None, 0, 0, 0.0
    while done < 1:
        net[0].bias.requires_grad = done < WHITEN_BIAS_UNTIL
        net.train()
        for xb, yb in batches(x, labels, epoch, batch, generator):
            for group in groups:
                group["lr"] = group["initial_lr"] * lr_at(done, 1.0, PEAK_AT, "linear")
            with compute.autocast():
                loss = criterion(net(xb).float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            done = (time.perf_counter() - start) / budget
            if done >= EMA_START and steps % EMA_EVERY == 0:
                if lookahead is None:
                    lookahead = Lookahead(net)
                else:
                    lookahead.update(net, EMA_BASE ** EMA_EVERY * min(done, 1.0) ** EMA_POWER)
            if done >= 1:
                break
        if lookahead is not None:
            lookahead.update(net, 1.0)
        epoch += 1
    return net.eval(), run_record(steps, batch, len(images), start)
