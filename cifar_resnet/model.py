"""The ResNet of BasicBlocks described by a ModelConfig (after torchvision's models/resnet.py).

Blocks take their parts (norm layer, activation) as arguments; each network layout is one builder
that owns its stem, stages, head and initialization. ``LAYOUTS`` maps ``ModelConfig.style`` to
its builder: the one place where a style is chosen. How each layout shapes the feature maps
(``config.Geometry``) lives with the configuration, which checks it without building anything.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .conv import Conv2d

NormLayer = Callable[[int], nn.Module]  # channels -> a norm layer
Activation = Callable[[], nn.Module]


def conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """A bias-free convolution with 'same' padding (the map shrinks only by the stride)."""
    return Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)


class FixedScaleBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose scale stays 1 (only the shift learns), with airbench's eps and a fast
    running average (momentum 0.4)."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class BasicBlock(nn.Module):
    """conv(F) - norm - act - conv(F) - norm, plus the shortcut, then act.

    The shortcut is the identity when the shape is unchanged, otherwise conv(K, stride) - norm.
    With ``maxpool=True`` the block also halves the map by a 2x2 max pool: after conv1 and before
    the shortcut's conv (so, with stride 1, conv1 runs at the input's full size).
    Input (B, in_channels, H, W) -> output (B, out_channels, ceil(H / s), ceil(W / s)),
    where s is the stride, times 2 with ``maxpool``. ``residual = False`` drops the shortcut: a plain
    block, for measuring what the shortcut does (notebook 02).
    """

    residual = True

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, skip_kernel: int = 1,
                 stride: int = 1, maxpool: bool = False, norm_layer: NormLayer = nn.BatchNorm2d,
                 activation: Activation = partial(nn.ReLU, inplace=True)):
        super().__init__()
        self.pool = nn.MaxPool2d(2, ceil_mode=True) if maxpool else nn.Identity()
        self.conv1 = conv(in_channels, out_channels, kernel, stride)
        self.bn1 = norm_layer(out_channels)
        self.conv2 = conv(out_channels, out_channels, kernel)
        self.bn2 = norm_layer(out_channels)
        self.act = activation()
        self.shortcut = nn.Identity()
        if stride != 1 or maxpool or in_channels != out_channels:
            self.shortcut = nn.Sequential(conv(in_channels, out_channels, skip_kernel, stride), norm_layer(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.bn1(self.pool(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(self.pool(x)) if self.residual else out)


class PooledConv(nn.Module):
    """conv(F) - 2x2 max pool - norm - act: how each stage of the airbench layout opens, setting the
    width and halving the map (rounding down). (B, C_in, H, W) -> (B, C_out, H // 2, W // 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3,
                 norm_layer: NormLayer = FixedScaleBatchNorm, activation: Activation = nn.GELU):
        super().__init__()
        self.conv = conv(in_channels, out_channels, kernel)
        self.pool = nn.MaxPool2d(2)
        self.norm = norm_layer(out_channels)
        self.act = activation()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.pool(self.conv(x))))


class TorchvisionLayout:
    """torchvision's ResNet for 32x32 images.

    Stem conv3x3 - BN - ReLU at 32x32; N stages of BasicBlocks, of which stage 1 keeps 32x32 and
    each later stage halves the map in its first block (a stride-2 conv1 and shortcut, or with
    ``downsample='maxpool'`` conv1 at full size then a 2x2 max pool: four times that conv's FLOPs,
    and it sees every position instead of one in four); a projection shortcut conv(K) - BN where
    the shape changes; ReLU; an average pool of P and a linear classifier. He initialization, and
    each residual branch starts as (almost) nothing: its last BatchNorm's scale is zero.
    """

    classifier_bias, logit_scale = True, 1.0

    def stem(self, config: ModelConfig) -> nn.Module:
        channels = config.stem_channels
        return nn.Sequential(conv(3, channels, 3), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def stage(self, config: ModelConfig, index: int, in_channels: int) -> nn.Sequential:
        out_channels, kernel, skip = config.channels[index], config.kernel[index], config.skip_kernel[index]
        halve = config.geometry.halves(index)
        pooled = halve and config.downsample == "maxpool"
        layers = [BasicBlock(in_channels, out_channels, kernel, skip, stride=2 if halve and not pooled else 1,
                             maxpool=pooled)]
        layers += [BasicBlock(out_channels, out_channels, kernel, skip) for _ in range(config.blocks[index] - 1)]
        return nn.Sequential(*layers)

    def pool(self, config: ModelConfig) -> nn.Module:
        return nn.AvgPool2d(config.pool)

    def initialize(self, model: nn.Module) -> None:
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in model.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)


class AirbenchLayout:
    """airbench's residual network (the layout of airbench96) as a ResNet of this course.

    An unpadded 2x2 stem of 24 channels with a bias and no BatchNorm (32 -> 31), then GELU; each
    stage opens with a PooledConv, conv(F) - 2x2 max pool - BN - GELU, which sets the width C_i and
    halves the map (the first stage too, rounding down: 31 -> 15 -> 7 -> 3 -> 1), then B_i
    BasicBlocks with identity shortcuts (so K is unused); GELU; BatchNorm with a fixed scale of 1
    (only the shift learns); a max pool of P; a bias-free classifier whose logits are scaled by 1/9.
    PyTorch's default initialization, a zero stem bias, and every conv starts as the identity on
    its inputs (dirac on its first C_in filters).
    """

    classifier_bias, logit_scale = False, 1 / 9

    def stem(self, config: ModelConfig) -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, config.stem_channels, 2, bias=True), nn.GELU())

    def stage(self, config: ModelConfig, index: int, in_channels: int) -> nn.Sequential:
        channels, kernel = config.channels[index], config.kernel[index]
        return nn.Sequential(PooledConv(in_channels, channels, kernel),
                             *[BasicBlock(channels, channels, kernel, norm_layer=FixedScaleBatchNorm,
                                          activation=nn.GELU) for _ in range(config.blocks[index])])

    def pool(self, config: ModelConfig) -> nn.Module:
        return nn.MaxPool2d(config.pool)

    def initialize(self, model: nn.Module) -> None:
        nn.init.zeros_(model.stem[0].bias)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.dirac_(m.weight[:m.in_channels])


LAYOUTS = {"torchvision": TorchvisionLayout(), "airbench": AirbenchLayout()}  # ModelConfig.style -> builder


class ResNet(nn.Module):
    """Stem, N stages of BasicBlocks, pool(P), linear classifier, as ``config.style``'s layout builds them.

    Input (B, 3, 32, 32) normalized floats -> logits (B, num_classes).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        layout = LAYOUTS[config.style]
        self.stem = layout.stem(config)
        stages, in_channels = [], config.stem_channels
        for index in range(config.stages):
            stages.append(layout.stage(config, index, in_channels))
            in_channels = config.channels[index]
        self.stages = nn.Sequential(*stages)
        self.pool = layout.pool(config)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(in_channels * config.pooled_size ** 2, config.num_classes, bias=layout.classifier_bias)
        self.logit_scale = layout.logit_scale
        layout.initialize(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.fc(self.flatten(self.pool(x))) * self.logit_scale


@torch.no_grad()
def whiten_stem(model: ResNet, images: Tensor, eps: float = 5e-4) -> None:
    """Set the stem's filters to whitening filters of ``images`` (normalized, (N, 3, 32, 32)) and freeze them.

    The filters are the leading eigenvectors of the covariance of the images' k x k patches (k, the
    stem conv's kernel: 3 for the torchvision layout, 2 for airbench's), each scaled by
    1/sqrt(eigenvalue) and paired with its negative, so that the activation after the stem keeps
    both signs. The stem then starts from decorrelated edges and colour contrasts instead of noise
    (airbench's patch-whitening initialization); channels beyond twice the patch size keep their
    random filters, and a stem bias keeps learning.
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
