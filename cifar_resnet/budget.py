"""Parameter and FLOP accounting for a ModelConfig, and the verdict against the 5M budget.

Parameters and forward FLOPs are counted from the configuration alone (instant, nothing is
built), layer by layer under the same names the built model gives its modules. Tests check the
parameters against the built model's ``sum(p.numel())`` and the FLOPs against
``count_flops``, which measures them with ``torch.utils.flop_counter`` on a 'meta'-device model.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch.utils.flop_counter import FlopCounterMode

from .config import IMAGE_SIZE, PARAMETER_BUDGET, ModelConfig
from .model import build_model


@dataclass(frozen=True)
class Layer:
    """One parameterised layer: where it sits, what kind it is, how many parameters it has."""

    name: str  # module name in the built ResNet, e.g. 'stages.1.0.shortcut.0'
    group: str  # 'stem', 'stage 1' ... 'stage N', 'head'
    kind: str  # 'conv', 'shortcut conv', 'batchnorm', 'linear'
    parameters: int
    flops: int = 0  # forward FLOPs for one image, a multiply-add counted as 2 (as flop_counter does)


@dataclass(frozen=True)
class StageSummary:
    name: str
    output_shape: tuple[int, int, int]  # (C, H, W) of one image
    parameters: int


@dataclass
class ParameterReport:
    """The parameter count of a configuration, by layer, stage and kind, with the budget verdict."""

    config: ModelConfig
    layers: list[Layer]
    budget: int = PARAMETER_BUDGET
    by_group: dict[str, int] = field(init=False)
    by_kind: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.by_group, self.by_kind = defaultdict(int), defaultdict(int)
        for layer in self.layers:
            self.by_group[layer.group] += layer.parameters
            self.by_kind[layer.kind] += layer.parameters
        self.by_group, self.by_kind = dict(self.by_group), dict(self.by_kind)

    @property
    def total(self) -> int:
        return sum(layer.parameters for layer in self.layers)

    @property
    def flops(self) -> int:
        """Forward FLOPs per image (a multiply-add counts 2; BatchNorm, ReLU and pooling not counted)."""
        return sum(layer.flops for layer in self.layers)

    @property
    def fits_budget(self) -> bool:
        return self.total < self.budget

    @property
    def stages(self) -> list[StageSummary]:
        """Stem, each stage and the head with their output shapes and parameter counts."""
        c = self.config
        rows = [StageSummary("stem", (c.stem_channels, c.stem_size, c.stem_size), self.by_group["stem"])]
        for i, (ch, size) in enumerate(zip(c.channels, c.feature_sizes), start=1):
            rows.append(StageSummary(f"stage {i}", (ch, size, size), self.by_group[f"stage {i}"]))
        rows.append(StageSummary("head", (c.num_classes, 1, 1), self.by_group["head"]))
        return rows

    @property
    def verdict(self) -> str:
        if self.fits_budget:
            return (f"fits the budget: {self.total:,} < {self.budget:,} parameters "
                    f"({self.budget - self.total:,} to spare)")
        return (f"OVER the budget: {self.total:,} >= {self.budget:,} parameters "
                f"({self.total - self.budget + 1:,} too many)")

    def table(self) -> str:
        """A plain-text table of the stages, the totals by kind and the verdict."""
        lines = [f"{'part':<9} {'output':>12} {'parameters':>12} {'share':>7}"]
        for s in self.stages:
            shape = "x".join(map(str, s.output_shape))
            lines.append(f"{s.name:<9} {shape:>12} {s.parameters:>12,} {s.parameters / self.total:>7.1%}")
        lines.append(f"{'total':<9} {'':>12} {self.total:>12,}")
        lines.append("by kind: " + ", ".join(f"{k} {v:,}" for k, v in self.by_kind.items()))
        lines.append(f"forward FLOPs per image: {self.flops:,} ({self.flops / 1e6:.1f} MFLOPs)")
        lines.append(self.verdict)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict(), "total": self.total, "budget": self.budget,
                "fits_budget": self.fits_budget, "flops": self.flops,
                "by_stage": self.by_group, "by_kind": self.by_kind,
                "stages": [{"name": s.name, "output_shape": list(s.output_shape),
                            "parameters": s.parameters} for s in self.stages]}


def _conv(name: str, group: str, kind: str, cin: int, cout: int, k: int, size: int, bias: bool = False) -> Layer:
    """A conv layer (bias-free unless ``bias``) with a ``size`` x ``size`` output map."""
    weights = cin * cout * k * k
    return Layer(name, group, kind, weights + (cout if bias else 0), 2 * weights * size * size)


def _batchnorm(name: str, group: str, channels: int) -> Layer:
    return Layer(name, group, "batchnorm", 2 * channels)


def layer_counts(config: ModelConfig) -> list[Layer]:
    """Every parameterised layer of the ResNet for ``config``, counted without building it."""
    airbench = config.style == "airbench"
    cin, size_in = config.stem_channels, config.stem_size
    if airbench:  # 2x2 conv with a bias, no BatchNorm
        layers = [_conv("stem.0", "stem", "conv", 3, cin, 2, size_in, bias=True)]
    else:
        layers = [_conv("stem.0", "stem", "conv", 3, cin, 3, size_in), _batchnorm("stem.1", "stem", cin)]
    for s, (blocks, cout, f, k, size) in enumerate(zip(config.blocks, config.channels, config.kernel,
                                                       config.skip_kernel, config.feature_sizes)):
        group = f"stage {s + 1}"
        if airbench:  # PooledConv: the conv runs before the pool
            layers += [_conv(f"stages.{s}.0.conv", group, "conv", cin, cout, f, size_in),
                       _batchnorm(f"stages.{s}.0.norm", group, cout)]
            cin, size_in = cout, size
        for b in range(blocks):
            p = f"stages.{s}.{b + 1 if airbench else b}."
            block_in = cin if b == 0 else cout
            conv1_size = size_in if b == 0 and config.downsample == "maxpool" else size  # pools after conv1
            layers += [_conv(p + "conv1", group, "conv", block_in, cout, f, conv1_size),
                       _batchnorm(p + "bn1", group, cout),
                       _conv(p + "conv2", group, "conv", cout, cout, f, size),
                       _batchnorm(p + "bn2", group, cout)]
            if b == 0 and (s > 0 or block_in != cout) and not airbench:
                layers += [_conv(p + "shortcut.0", group, "shortcut conv", block_in, cout, k, size),
                           _batchnorm(p + "shortcut.1", group, cout)]
        cin, size_in = cout, size
    features = cin * config.pooled_size ** 2
    fc_bias = 0 if airbench else config.num_classes
    layers.append(Layer("fc", "head", "linear", features * config.num_classes + fc_bias,
                        2 * features * config.num_classes))
    return layers


def count_flops(config: ModelConfig) -> int:
    """Forward FLOPs for one 3x32x32 image measured by torch.utils.flop_counter (a multiply-add is 2).

    Builds the model on the 'meta' device (no memory); ``count_parameters(config).flops`` gives
    the same number from the configuration alone.
    """
    model = build_model(config, device="meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(1, 3, IMAGE_SIZE, IMAGE_SIZE, device="meta"))
    return counter.get_total_flops()


def count_training_flops(config: ModelConfig, frozen_stem: bool = False) -> int:
    """FLOPs of one training image, forward and backward, measured by torch.utils.flop_counter.

    Times the images a run sees (steps x batch size), this is the run's training cost.
    ``frozen_stem``: the stem's weights get no gradient (a run with ``whiten_stem``).
    """
    model = build_model(config, device="meta").train()
    model.stem[0].weight.requires_grad_(not frozen_stem)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.empty(1, 3, IMAGE_SIZE, IMAGE_SIZE, device="meta")).sum().backward()
    return counter.get_total_flops()


def count_parameters(config: ModelConfig, budget: int = PARAMETER_BUDGET) -> ParameterReport:
    """The parameter and FLOP report for ``config``, computed from the configuration (instant)."""
    return ParameterReport(config, layer_counts(config), budget)
