"""The network drawn from its configuration: the stages in a row, and one BasicBlock opened up beside them."""
from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from .config import ConfigurationError, ModelConfig

BRANCH, SHORTCUT, JOIN = "#bbdefb", "#ffe0b2", "#c8e6c9"  # the residual branch, the shortcut, the sum


def _box(ax, x: float, y: float, text: str, color: str, width: float = 1.7, height: float = 0.55) -> None:
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.04",
                                facecolor=color, edgecolor="black", linewidth=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], text: str = "") -> None:
    ax.annotate("", end, start, arrowprops=dict(arrowstyle="->", lw=0.9))
    if text:
        ax.text((start[0] + end[0]) / 2 + 0.08, (start[1] + end[1]) / 2, text, fontsize=7, va="center")


def block_diagram(config: ModelConfig) -> Figure:
    """Left: the network, stem to classifier, one box per stage with its B_i, C_i, F_i and map size. Right: the first
    block of stage 2 opened up: conv - BN - ReLU - conv - BN on one path, the shortcut on the other, their sum, ReLU.
    Drawn from ``config``, so it follows any change to it; the course's layout (style 'torchvision') only."""
    if config.style != "torchvision":
        raise ConfigurationError(f"block_diagram draws the course's layout (style='torchvision'), not style = "
                                 f"{config.style!r}: model.AirbenchLayout's docstring describes that one")
    fig, (net, block) = plt.subplots(1, 2, figsize=(10, 0.9 + 0.75 * (config.stages + 3)),
                                     gridspec_kw={"width_ratios": [1.1, 1]})
    sizes = config.feature_sizes
    rows = [f"stem: conv 3x3, 3 -> {config.stem_channels}, BN, ReLU\n{config.geometry.stem_size}x"
            f"{config.geometry.stem_size}"]
    rows += [f"stage {i + 1}: {b} BasicBlock{'s' if b > 1 else ''}, {c} channels, F = {f}\n{s}x{s}"
             for i, (b, c, f, s) in enumerate(zip(config.blocks, config.channels, config.kernel, sizes))]
    rows += [f"average pool P = {config.pool}: {config.pooled_size}x{config.pooled_size}",
             f"linear: {config.channels[-1] * config.pooled_size ** 2} -> {config.num_classes} class scores"]
    for i, text in enumerate(rows):
        _box(net, 0, -i, text, SHORTCUT if i == 0 or i >= len(rows) - 2 else BRANCH, width=3.2, height=0.6)
        if i:
            _arrow(net, (0, -i + 0.7), (0, -i + 0.3))
    net.set(xlim=(-1.8, 1.8), ylim=(-len(rows) + 0.4, 0.6), title="the network (N = %d stages)" % config.stages)
    stage = min(1, config.stages - 1)
    c_in, c_out = config.channels[stage - 1] if stage else config.stem_channels, config.channels[stage]
    f, k = config.kernel[stage], config.skip_kernel[stage]
    halves = config.geometry.halves(stage)
    projection = halves or c_in != c_out
    stride = ", stride 2" if halves and config.downsample == "stride" else ""
    pooled = halves and config.downsample == "maxpool"
    steps = [f"conv {f}x{f}{', 2x2 max pool' if pooled else stride}\n{c_in} -> {c_out}", "BN, ReLU", f"conv {f}x{f}\n{c_out} -> {c_out}",
             "BN (scale starts at 0)"]
    for i, text in enumerate(steps):
        _box(block, 0, -i, text, BRANCH)
        if i:
            _arrow(block, (0, -i + 0.72), (0, -i + 0.28))
    shortcut = f"{'2x2 max pool, ' if pooled else ''}conv {k}x{k}{stride}, BN\n{c_in} -> {c_out}"
    _box(block, 2.1, -1.5, shortcut if projection else "identity", SHORTCUT, width=2.0)
    _box(block, 1.05, -4.1, "+, then ReLU", JOIN, width=1.5)
    _box(block, 1.05, 1.0, f"x: {c_in} channels", JOIN, width=1.5)
    _arrow(block, (0.8, 0.72), (0.1, 0.3), "F(x)")
    _arrow(block, (1.3, 0.72), (2.0, -1.2), "x")
    _arrow(block, (0, -3.28), (0.8, -3.8))
    _arrow(block, (2.1, -1.8), (1.3, -3.8))
    block.set(xlim=(-1.1, 3.2), ylim=(-4.6, 1.5),
              title=f"stage {stage + 1}'s first block: out = ReLU(F(x) + shortcut(x))")
    for ax in (net, block):
        ax.axis("off")
    fig.tight_layout()
    return fig
