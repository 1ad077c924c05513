"""Parameter and FLOP accounting, counted from the network itself, and the verdict against the 5M budget.

``count_parameters`` takes a ModelConfig (built on the 'meta' device, which allocates nothing) or
any ``nn.Module``, such as a student's own network. It lists every layer that holds parameters,
grouped by the module names (stem, stage 1 ... stage N, head), runs one image through it to read
each group's output shape and each convolution's and linear layer's FLOPs (with the formulas of
``torch.utils.flop_counter``), and gives the verdict against the budget.
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from .config import PARAMETER_BUDGET, ModelConfig
from .model import build_model
from .network import Builder, Network

IMAGE_SHAPE = (3, 32, 32)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class Layer:
    """One parameterised layer: where it sits, what kind it is, how many parameters it has."""

    name: str  # module name in the network, e.g. 'stages.1.0.shortcut.0'
    group: str  # 'stem', 'stage 1' ... 'stage N', 'head' (another network: its top-level module's name)
    kind: str  # 'conv', 'shortcut conv', 'batchnorm', 'linear', or the module's class name
    parameters: int
    flops: int = 0  # forward FLOPs for one image, a multiply-add counted as 2 (as flop_counter does)


@dataclass(frozen=True)
class StageSummary:
    name: str
    output_shape: tuple[int, ...]  # of one image: (C, H, W); the logits as (classes, 1, 1)
    parameters: int


@dataclass
class ParameterReport:
    """The parameter count of a network, by layer, group and kind, with the budget verdict."""

    config: Network | None  # the configuration or builder counted; None for a network given as an nn.Module
    layers: list[Layer]
    stages: list[StageSummary]  # each group with its output shape and parameters
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
        """Forward FLOPs per image (a multiply-add counts 2; BatchNorm, activations and pooling not counted)."""
        return sum(layer.flops for layer in self.layers)

    @property
    def fits_budget(self) -> bool:
        """The course's rule: no more than ``budget`` parameters (exactly 5,000,000 fits)."""
        return self.total <= self.budget

    @property
    def verdict(self) -> str:
        if self.fits_budget:
            return (f"fits the budget: {self.total:,} <= {self.budget:,} parameters "
                    f"({self.budget - self.total:,} to spare)")
        return (f"OVER the budget: {self.total:,} > {self.budget:,} parameters "
                f"({self.total - self.budget:,} too many)")

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

    def layer_table(self) -> str:
        """Every layer that holds parameters, once each even when it is used twice, with the total."""
        width = max([len(layer.name) for layer in self.layers] + [5])
        lines = [f"{'layer':<{width}} {'kind':<14} {'parameters':>12} {'share':>7} {'MFLOPs':>9}"]
        lines += [f"{layer.name:<{width}} {layer.kind:<14} {layer.parameters:>12,} "
                  f"{layer.parameters / self.total:>7.1%} {layer.flops / 1e6:>9.1f}" for layer in self.layers]
        lines.append(f"{'total':<{width}} {'':<14} {self.total:>12,} {'':>7} {self.flops / 1e6:>9.1f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"config": self.config.to_dict() if self.config else None, "total": self.total,
                "budget": self.budget, "fits_budget": self.fits_budget, "flops": self.flops,
                "by_stage": self.by_group, "by_kind": self.by_kind,
                "stages": [{"name": s.name, "output_shape": list(s.output_shape),
                            "parameters": s.parameters} for s in self.stages]}


def group_of(name: str) -> str:
    """The part of the network a module belongs to, from its name: 'stages.2.0.conv1' -> 'stage 3',
    'stem.0' -> 'stem', 'fc' (or anything else after the stages) -> 'head'; in a network of other
    names, its top-level module's name."""
    top, _, rest = name.partition(".")
    if top == "stages" and rest:
        return f"stage {int(rest.split('.')[0]) + 1}"
    return "head" if top in ("pool", "flatten", "fc") else top


def _kind(name: str, module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return "shortcut conv" if "shortcut" in name else "conv"
    if isinstance(module, NORM_LAYERS):
        return "batchnorm" if isinstance(module, nn.modules.batchnorm._BatchNorm) else type(module).__name__.lower()
    return "linear" if isinstance(module, nn.Linear) else type(module).__name__


def _flops(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """Forward FLOPs of a conv or linear layer for these shapes, by torch.utils.flop_counter's formulas."""
    if isinstance(module, nn.Conv2d):
        return conv_flop_count(list(x.shape), list(module.weight.shape), list(out.shape))
    if isinstance(module, nn.Linear):
        return 2 * x.numel() * module.out_features
    return 0


@contextlib.contextmanager
def _norms_pass_through(model: nn.Module):
    """While tracing shapes, norm layers return their input (its shape is theirs): on the 'meta'
    device they take most of the trace's time."""
    norms = [m for m in model.modules() if isinstance(m, NORM_LAYERS)]
    for m in norms:
        m.forward = _identity
    try:
        yield
    finally:
        for m in norms:
            del m.forward


def _identity(x):
    return x


def _group_outputs(model: nn.Module) -> dict[str, nn.Module]:
    """The module whose output is each group's output: each stage of ``stages``, and the other
    top-level modules (the head's output is the logits)."""
    groups = {}
    for name, module in model.named_children():
        if name == "stages":
            groups.update((group_of(f"stages.{i}"), stage) for i, stage in enumerate(module))
        elif group_of(name) != "head":
            groups[name] = module
    return groups


def _trace(model: nn.Module) -> tuple[dict[str, tuple], dict[str, int]]:
    """Run one image through ``model``: each group's output shape and each layer's FLOPs."""
    device = next(model.parameters()).device
    shapes, flops = {}, {}
    hooks = [m.register_forward_hook(lambda m, i, o, g=g: shapes.__setitem__(g, tuple(o.shape[1:])))
             for g, m in _group_outputs(model).items()]
    hooks += [m.register_forward_hook(lambda m, i, o, n=n: flops.__setitem__(n, flops.get(n, 0) + _flops(m, i[0], o)))
              for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]  # a shared layer adds up
    was_training = model.training
    shortcut = _norms_pass_through(model) if device.type == "meta" else contextlib.nullcontext()
    try:
        with shortcut, torch.no_grad():
            logits = model.eval()(torch.zeros(1, *IMAGE_SHAPE, device=device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    shapes["head"] = (*logits.shape[1:], 1, 1)
    return shapes, flops


def _report_parts(model: nn.Module) -> tuple[list[Layer], list[StageSummary]]:
    shapes, flops = _trace(model)
    layers = [Layer(name, group_of(name), _kind(name, module), sum(p.numel() for p in module.parameters(recurse=False)),
                    flops.get(name, 0))
              for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))]
    totals = defaultdict(int)
    for layer in layers:
        totals[layer.group] += layer.parameters
    return layers, [StageSummary(g, shapes[g], totals[g]) for g in shapes if g in totals]  # in the image's order


@lru_cache(maxsize=512)
def _config_parts(config: ModelConfig) -> tuple[list[Layer], list[StageSummary]]:
    return _report_parts(build_model(config, device="meta"))


def count_parameters(network: Network | nn.Module, budget: int = PARAMETER_BUDGET) -> ParameterReport:
    """The parameter and FLOP report of a configuration (built on 'meta', cached), of a student's
    builder (built on the CPU) or of any network."""
    if isinstance(network, ModelConfig):
        layers, stages = _config_parts(network)
        return ParameterReport(network, list(layers), list(stages), budget)
    layers, stages = _report_parts(network.build() if isinstance(network, Builder) else network)
    return ParameterReport(network if isinstance(network, Builder) else None, layers, stages, budget)


def count_flops(config: ModelConfig) -> int:
    """Forward FLOPs for one 3x32x32 image measured by torch.utils.flop_counter (a multiply-add is 2).

    Builds the model on the 'meta' device (no memory); ``count_parameters(config).flops`` gives
    the same number.
    """
    model = build_model(config, device="meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.empty(1, *IMAGE_SHAPE, device="meta"))
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
        model(torch.empty(1, *IMAGE_SHAPE, device="meta")).sum().backward()
    return counter.get_total_flops()
