"""The ResNet of BasicBlocks described by a ModelConfig (after torchvision's models/resnet.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig

AIRBENCH_LOGIT_SCALE = 1 / 9  # the airbench style's classifier output is scaled down by this


def conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free convolution with 'same' padding (the map shrinks only by the stride)."""
    return nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)


class FixedScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1 (only the shift learns), with airbench's eps and a fast
    running average (momentum 0.4)."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class PooledConv(nn.Module):
    """conv(F) - 2x2 max pool - BN - GELU: how each stage of the airbench style opens, setting the
    width and halving the map (rounding down). (B, C_in, H, W) -> (B, C_out, H // 2, W // 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3):
        super().__init__()
        self.conv = conv(in_channels, out_channels, kernel)
        self.pool = nn.MaxPool2d(2)
        self.norm = FixedScaleBatchNorm(out_channels)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.pool(self.conv(x))))


class BasicBlock(nn.Module):
    """conv(F) - BN - ReLU - conv(F) - BN, plus the shortcut, then ReLU.

    The shortcut is the identity when the shape is unchanged, otherwise conv(K, stride) - BN.
    With ``maxpool=True`` the block also halves the map by a 2x2 max pool: after conv1 and before
    the shortcut's conv (so, with stride 1, conv1 runs at the input's full size).
    Input (B, in_channels, H, W) -> output (B, out_channels, ceil(H / s), ceil(W / s)),
    where s is the stride, times 2 with ``maxpool``.
    ``style='airbench'`` swaps in GELU and FixedScaleBatchNorm (see ModelConfig).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3,
                 skip_kernel: int = 1, stride: int = 1, maxpool: bool = False, style: str = "torchvision"):
        super().__init__()
        airbench = style == "airbench"
        norm = FixedScaleBatchNorm if airbench else nn.BatchNorm2d
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if maxpool else nn.Identity()
        self.conv1 = conv(in_channels, out_channels, kernel, stride)
        self.bn1 = norm(out_channels)
        self.conv2 = conv(out_channels, out_channels, kernel)
        self.bn2 = norm(out_channels)
        self.act = nn.GELU() if airbench else nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or maxpool or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv(in_channels, out_channels, skip_kernel, stride),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.pool(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(self.pool(x)))


class ResNet(nn.Module):
    """Stem conv3x3 - BN - ReLU, N stages of BasicBlocks, AvgPool(P), Linear.

    Stage 1 keeps 32x32; each later stage halves the map in its first block (by a stride or by
    a max pool, as ``config.downsample`` says).
    ``config.style == 'airbench'``: stem conv2x2 (unpadded, with bias) - GELU, each stage a
    PooledConv then B_i BasicBlocks, MaxPool(P), a bias-free Linear and logits times 1/9 (see ModelConfig).
    Input (B, 3, 32, 32) normalized floats -> logits (B, num_classes).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        airbench = config.style == "airbench"
        stem = config.stem_channels
        if airbench:
            self.stem = nn.Sequential(nn.Conv2d(3, stem, 2, bias=True), nn.GELU())
        else:
            self.stem = nn.Sequential(conv(3, stem, 3), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        stages, in_channels = [], stem
        for i, (blocks, out_channels, kernel, skip) in enumerate(
                zip(config.blocks, config.channels, config.kernel, config.skip_kernel)):
            if airbench:
                stages.append(nn.Sequential(PooledConv(in_channels, out_channels, kernel),
                                            *[BasicBlock(out_channels, out_channels, kernel, style=config.style)
                                              for _ in range(blocks)]))
            else:
                stages.append(self._make_stage(in_channels, out_channels, blocks, kernel, skip, halve=i > 0,
                                               maxpool=config.downsample == "maxpool"))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.MaxPool2d(config.pool) if airbench else nn.AvgPool2d(config.pool)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_channels * config.pooled_size ** 2, config.num_classes, bias=not airbench)
        self.logit_scale = AIRBENCH_LOGIT_SCALE if airbench else 1.0
        if airbench:
            self._init_airbench()
        else:
            self._init_torchvision()

    def _init_torchvision(self) -> None:
        """He initialization for the convs; each residual branch starts as (almost) nothing."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def _init_airbench(self) -> None:
        """PyTorch's default weights, a zero stem bias, and each conv's first C_in filters the
        identity (a conv from C_in channels starts by passing them through; a square one is the identity)."""
        nn.init.zeros_(self.stem[0].bias)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.dirac_(m.weight[:m.in_channels])

    @staticmethod
    def _make_stage(in_channels, out_channels, blocks, kernel, skip_kernel, halve, maxpool) -> nn.Sequential:
        pooled = halve and maxpool
        layers = [BasicBlock(in_channels, out_channels, kernel, skip_kernel,
                             stride=2 if halve and not pooled else 1, maxpool=pooled)]
        layers += [BasicBlock(out_channels, out_channels, kernel, skip_kernel) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.fc(self.flatten(self.pool(x))) * self.logit_scale


@torch.no_grad()
def whiten_stem(model: ResNet, images: Tensor, eps: float = 5e-4) -> None:
    """Set the stem's filters to whitening filters of ``images`` (normalized, (N, 3, 32, 32)) and freeze them.

    The filters are the leading eigenvectors of the covariance of the images' 3x3 patches, each
    scaled by 1/sqrt(eigenvalue) and paired with its negative, so that the ReLU after the stem
    keeps both signs. The stem then starts from decorrelated edges and colour contrasts instead
    of noise (airbench's patch-whitening initialization); channels beyond twice the patch size
    keep their random filters.
    """
    weight = model.stem[0].weight
    out_channels, in_channels, k, _ = weight.shape
    covariance, count = 0, 0
    for chunk in images.split(500):  # the patches of 500 images at a time: about 50 MB
        patches = F.unfold(chunk.float(), k).transpose(1, 2).reshape(-1, in_channels * k * k)
        covariance, count = covariance + patches.T @ patches, count + len(patches)
    covariance = covariance / count
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    order = eigenvalues.argsort(descending=True)
    filters = eigenvectors.T[order] / torch.sqrt(eigenvalues[order] + eps).unsqueeze(1)
    pairs = min(out_channels // 2, len(filters))
    filters = filters[:pairs].view(pairs, in_channels, k, k)
    weight[:2 * pairs] = torch.cat([filters, -filters]).to(weight)
    weight.requires_grad_(False)


def build_model(config: ModelConfig, device: torch.device | str | None = None) -> ResNet:
    """A freshly initialised ResNet for ``config`` (on ``device``; 'meta' allocates nothing)."""
    with torch.device(device or "cpu"):
        return ResNet(config)
