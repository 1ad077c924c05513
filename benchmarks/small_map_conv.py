"""Each convolution of cpu-fast's network, forward and backward (both gradients) on its input's shape in training,
as nn.Conv2d computes it (oneDNN's weight gradient) and as `cifar_resnet.conv.Conv2d` does (a matrix product on maps
of at most SMALL_MAP pixels), in alternating rounds on this machine, under the run's autocast and channels_last.
Prints ms per batch of 512 for each layer, the totals, then one JSON line.
  python benchmarks/small_map_conv.py            # about a minute
  python benchmarks/small_map_conv.py --smoke    # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time

import torch
from torch import nn

from experiments import machine

from cifar_resnet import build_model, get_preset
from cifar_resnet.conv import Conv2d
from cifar_resnet.device import Compute

PRESET = "cpu-fast"


def layer_inputs(model: nn.Module, batch: int) -> dict[str, tuple[Conv2d, torch.Size]]:
    """Each Conv2d layer of ``model`` and the shape of its input in a forward pass of ``batch`` images."""
    shapes, hooks = {}, []

    def record(name: str):
        def hook(module, inputs, _):
            shapes[name] = (module, inputs[0].shape)
        return hook
    for name, module in model.named_modules():
        if isinstance(module, Conv2d):
            hooks.append(module.register_forward_hook(record(name)))
    with torch.no_grad():
        model(torch.randn(batch, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    return shapes


def training_pass(conv: Conv2d, x: torch.Tensor, compute: Compute, forward):
    """One forward and backward pass of ``conv`` on ``x`` through ``forward`` (nn.Conv2d's or Conv2d's)."""
    def step():
        conv.weight.grad = x.grad = None
        with compute.autocast():
            y = forward(conv, x)
        y.backward(torch.ones_like(y))
    return step


def ms_per_pass(step, passes: int) -> float:
    start = time.perf_counter()
    for _ in range(passes):
        step()
    return 1000 * (time.perf_counter() - start) / passes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=512, help="images per pass (cpu-fast's batch)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--passes", type=int, default=5, help="passes per round, for each way (and warm-up passes)")
    parser.add_argument("--smoke", action="store_true", help="batches of 8, one pass a round: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.rounds, args.passes = 8, 2, 1
    compute = Compute.choose()
    model = build_model(get_preset(PRESET).model).to(memory_format=torch.channels_last)
    print(f"{machine()}\n{PRESET}'s convolutions, batches of {args.batch}, {args.rounds} alternating rounds of "
          f"{args.passes} passes", flush=True)
    ways = {"nn.Conv2d": nn.Conv2d.forward, "Conv2d": Conv2d.forward}
    times = {}
    for name, (conv, shape) in layer_inputs(model, args.batch).items():
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
        steps = {way: training_pass(conv, x, compute, forward) for way, forward in ways.items()}
        for step in steps.values():
            ms_per_pass(step, args.passes)  # warm-up
        rounds = [{way: ms_per_pass(step, args.passes) for way, step in steps.items()} for _ in range(args.rounds)]
        times[name] = {"input": list(shape), **{way: statistics.mean(r[way] for r in rounds) for way in ways}}
    print(f"\n{'layer':<22} {'input':<20} {'nn.Conv2d ms':>12} {'Conv2d ms':>10} {'ratio':>6}")
    for name, t in times.items():
        print(f"{name:<22} {'x'.join(map(str, t['input'][1:])):<20} {t['nn.Conv2d']:12.1f} {t['Conv2d']:10.1f} "
              f"{t['nn.Conv2d'] / t['Conv2d']:5.2f}x")
    totals = {way: sum(t[way] for t in times.values()) for way in ways}
    print(f"{'all':<43} {totals['nn.Conv2d']:12.1f} {totals['Conv2d']:10.1f} "
          f"{totals['nn.Conv2d'] / totals['Conv2d']:5.2f}x")
    print(json.dumps({"machine": machine(), "date": datetime.date.today().isoformat(), "batch": args.batch,
                      "ms_per_pass": times, "totals": totals}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
