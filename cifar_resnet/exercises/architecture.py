"""Notebook 02's exercises: the BasicBlock, a stage of blocks, the parameter count as a formula, a 4-stage network."""
from __future__ import annotations

import torch
from torch import nn

from ..budget import count_parameters
from ..config import PRESETS, ModelConfig
from ..model import AirbenchLayout, BasicBlock, TorchvisionLayout, build_model
from . import cases
from .marking import Exercise


def _randomized(module: nn.Module, g: torch.Generator) -> nn.Module:
    """``module`` with random weights and BatchNorm statistics, so that a wrong wiring cannot match by chance."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.copy_(torch.randn(t.shape, generator=g, device=cases.CPU))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, device=cases.CPU) + 0.5)
            elif isinstance(m, nn.Conv2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g, device=cases.CPU) / m.weight[0].numel() ** 0.5)
    return module


def _same_function(theirs: nn.Module, ours: nn.Module, x: torch.Tensor) -> str | None:
    """None when ``theirs`` loads ``ours``' weights and then computes what it computes; else what differs."""
    expected_keys, keys = list(ours.state_dict()), list(theirs.state_dict())
    if sorted(keys) != sorted(expected_keys):
        return (f"name the parts as the package does, so its weights load into yours: expected {expected_keys}, "
                f"found {keys}")
    theirs.load_state_dict(ours.state_dict())
    for train in (False, True):
        theirs.train(train), ours.train(train)
        with torch.no_grad():
            got, want = theirs(x.clone()), ours(x.clone())
        if got.shape != want.shape:
            return f"the output should have shape {tuple(want.shape)}, not {tuple(got.shape)}"
        if not torch.allclose(got, want, atol=1e-4):
            if (got < 0).any():
                return "apply the ReLU after adding the shortcut: a block's output is never negative"
            return ("the output differs from the package's block with the same weights: conv1 - bn1 - ReLU - conv2 - "
                    "bn2, plus the shortcut of the block's input, then ReLU")
    return None


def check_block(answer) -> tuple[bool, str]:
    g = cases.generator()
    for in_channels, out_channels, stride in ((16, 16, 1), (16, 32, 2), (16, 32, 1)):
        theirs = answer(in_channels, out_channels, stride)
        ours = _randomized(BasicBlock(in_channels, out_channels, stride=stride), g)
        shape = f"MyBasicBlock({in_channels}, {out_channels}, stride={stride})"
        expected = sum(p.numel() for p in ours.parameters())
        found = sum(p.numel() for p in theirs.parameters())
        if found != expected:
            projection = in_channels != out_channels or stride != 1
            return False, (f"{shape} should have {expected:,} parameters, not {found:,}: two bias-free 3x3 convolutions "
                           f"and two BatchNorms" + (", and a projection shortcut: a bias-free 1x1 convolution with the "
                                                    "block's stride, then a BatchNorm" if projection else
                                                    ", and the identity as the shortcut (no parameters)"))
        bn2 = getattr(theirs, "bn2", None)
        if not isinstance(bn2, nn.BatchNorm2d) or bn2.weight.abs().sum() != 0:
            return False, ("start the residual branch at zero: set the last BatchNorm's scale to 0 "
                           "(nn.init.zeros_(self.bn2.weight)), so the block begins as ReLU(shortcut(x))")
        x = torch.randn(4, in_channels, 8, 8, generator=g, device=cases.CPU)
        problem = _same_function(theirs, ours, x)
        if problem:
            return False, f"{shape}: {problem}"
    return True, ""


def check_stage(answer) -> tuple[bool, str]:
    g = cases.generator()
    for in_channels, out_channels, blocks, stride in ((8, 16, 3, 2), (16, 16, 2, 1)):
        theirs = answer(in_channels, out_channels, blocks, stride, BasicBlock)
        ours = _randomized(nn.Sequential(BasicBlock(in_channels, out_channels, stride=stride),
                                         *[BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]), g)
        found = [m for m in theirs.modules() if isinstance(m, BasicBlock)]
        if len(found) != blocks:
            return False, f"a stage of {blocks} blocks holds {blocks} BasicBlocks, one after the other, not {len(found)}"
        x = torch.randn(2, in_channels, 8, 8, generator=g, device=cases.CPU)
        with torch.no_grad():
            shape = tuple(theirs.eval()(x).shape)
        if shape != (2, out_channels, 8 // stride, 8 // stride):
            return False, (f"only the first block changes the channels and has the stride: the output should be "
                           f"{(2, out_channels, 8 // stride, 8 // stride)}, not {shape}")
        problem = _same_function(theirs, ours, x)
        if problem:
            return False, ("the first block is block(in_channels, out_channels, stride=stride), the others "
                           f"block(out_channels, out_channels), in an nn.Sequential: {problem}")
    return True, ""


def _random_config(g: torch.Generator) -> ModelConfig:
    stages = cases.integer(g, 2, 4)
    pick = lambda values: values[cases.integer(g, 0, len(values) - 1)]  # noqa: E731
    channels = tuple(4 * cases.integer(g, 2, 24) for _ in range(stages))
    final = 32 // 2 ** (stages - 1)
    return ModelConfig(blocks=tuple(cases.integer(g, 1, 3) for _ in range(stages)), channels=channels,
                       kernel=tuple(pick((1, 3, 5)) for _ in range(stages)),
                       skip_kernel=tuple(pick((1, 3)) for _ in range(stages)), pool=pick((1, 2, final)))


def check_parameter_count(answer) -> tuple[bool, str]:
    g = cases.generator()
    reference = PRESETS["reference"].model
    for config in [reference] + [_random_config(g) for _ in range(12)]:
        expected = count_parameters(config).total
        found = answer(config.blocks, config.channels, config.kernel, config.skip_kernel, config.pool)
        if found != expected:
            return False, (f"for B = {config.blocks}, C = {config.channels}, F = {config.kernel}, "
                           f"K = {config.skip_kernel}, P = {config.pool} the network has {expected:,} parameters; "
                           f"yours says {found:,} ({found - expected:+,}). Count: the stem (a 3x3 conv 3 -> C_1 and a "
                           f"BatchNorm, 2 per channel); per block two convs C_in x C x F^2 and C x C x F^2 and two "
                           f"BatchNorms; a projection (C_in x C x K^2 and a BatchNorm) where the channels or the map "
                           f"size change; the head: C_N x (s / P)^2 x 10 weights and 10 biases, s the last map's side "
                           f"(32 halved by every stage after the first, rounding up)")
    return True, ""


def check_four_stages(answer: ModelConfig) -> tuple[bool, str]:
    if not isinstance(answer, ModelConfig) or answer.stages != 4:
        return False, "give a ModelConfig with four stages (four entries in blocks and channels)"
    preset = next((name for name, p in PRESETS.items() if p.model == answer), None)
    if preset:
        return False, f"that is the preset {preset!r}: design a 4-stage network of your own"
    report = count_parameters(answer)
    if not report.fits_budget:
        return False, f"{report.verdict}: narrow the last stage, whose channels cost the most"
    return report.total >= 4_000_000, f"it fits with {report.total:,}; use the budget: at least 4,000,000 parameters"


EXERCISES = (
    Exercise("MyBasicBlock", check_block, kind="class", own=(BasicBlock, "BasicBlock")),
    Exercise("make_stage", check_stage, own=(TorchvisionLayout, AirbenchLayout, build_model)),
    Exercise("parameter_count", check_parameter_count,
             own=(count_parameters, build_model, ModelConfig, "numel", "count_parameters", "parameters")),
    Exercise("four_stage_config", check_four_stages, kind="value"),
)
