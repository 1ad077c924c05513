"""What each stage's width costs cpu-fast's training step, like for like against airbench94's, on this machine.

cpu-fast's network (airbench's layout: a pooled conv and a BasicBlock a stage) at several stage widths, each stepping
as `Trainer.train_step` does with cpu-fast's recipe (batch 512, Muon, lookahead), beside airbench94's step
(benchmarks/airbench94.py, batch 1,024), in alternating rounds, all in the phase after the stems' biases froze
(step_speed.py's). All ways keep freed memory for reuse (`cifar_resnet.memory.kept_for_reuse`), so that only the
networks differ. For each it gives the parameters, the training FLOPs per image (torch.utils.flop_counter), and the
means over the rounds of ms a step, images/s and its ratio to airbench94's. Prints a line a round, the means, then one
JSON line.
  python benchmarks/stage_widths.py --data DATA                        # about 3 minutes
  python benchmarks/stage_widths.py --widths 64,160,256 64,192,256     # just these
  python benchmarks/stage_widths.py --smoke                            # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys

import airbench94
from experiments import machine
from step_speed import FROZEN_PHASE, PRESET, airbench94_step, cpu_fast_trainer, seconds, timing_options
from utilization import training_flops_per_image

from cifar_resnet import count_parameters, get_preset, load_cifar10
from cifar_resnet.device import Compute
from cifar_resnet.memory import kept_for_reuse

WIDTHS = ("64,160,256", "64,192,256", "32,192,256", "48,192,256", "64,192,224", "32,224,288")  # the preset's first
BASELINE = "airbench94"


def widths(text: str) -> tuple[int, ...]:
    """'32,192,256' -> (32, 192, 256)."""
    try:
        return tuple(int(w) for w in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a stage's widths as integers joined by commas") from None


def cpu_fast_step(data, channels: tuple[int, ...]):
    """cpu-fast's step at stage widths ``channels`` (frozen-stem phase), its batch's size, the network's
    parameters and its training FLOPs per image."""
    network = dataclasses.replace(get_preset(PRESET).model, channels=channels)
    trainer, x, y = cpu_fast_trainer(data, compiled=False, fraction_done=FROZEN_PHASE, network=network)
    flops = training_flops_per_image(trainer.model, {"stem.0.bias": False})
    return lambda: trainer.train_step(x, y, lr=0.1), len(x), count_parameters(network).total, flops


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=widths, nargs="+", default=[widths(w) for w in WIDTHS],
                        help="stage widths to time, each as C1,C2,C3 (default: the preset's and five others)")
    timing_options(parser, rounds=8)  # one way's rounds spread by up to 38% here
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.steps = 2, 1
    data = load_cifar10(args.data, smoke=args.smoke)
    compute = Compute.choose()
    print(f"{data}\n{machine()}\n{args.rounds} alternating rounds of {args.steps} steps each; every way keeps freed "
          f"memory for reuse", flush=True)
    with kept_for_reuse(compute.device):
        step, batch = airbench94_step(data, compute)
        airbench_net = airbench94.make_net()
        ways = {BASELINE: (step, batch, sum(p.numel() for p in airbench_net.parameters()),
                           training_flops_per_image(airbench_net, {"0.bias": False}))}
        ways |= {"/".join(map(str, c)): cpu_fast_step(data, c) for c in args.widths}
        for step, *_ in ways.values():
            seconds(step, args.steps)  # warm-up: allocations and kernel choice
        speeds = {name: [] for name in ways}
        for k in range(args.rounds):
            for name, (step, size, *_) in ways.items():
                speeds[name].append(size / seconds(step, args.steps))
                print(f"round {k + 1} {name:<12} {speeds[name][-1]:8.0f} images/s", flush=True)
    means = {name: statistics.mean(s) for name, s in speeds.items()}
    print(f"\n{'widths':<12} {'parameters':>11} {'GFLOPs':>7} {'ms a step':>10} {'images/s':>9} {'/ ' + BASELINE:>13}")
    for name, (_, size, parameters, flops) in ways.items():
        print(f"{name:<12} {parameters:11,} {flops / 1e9:7.3f} {1000 * size / means[name]:10.1f} {means[name]:9.0f} "
              f"{means[name] / means[BASELINE]:12.2f}x")
    print(json.dumps({"machine": machine(), "date": datetime.date.today().isoformat(), "steps": args.steps,
                      "ways": {name: {"batch": size, "parameters": parameters, "training_flops": flops}
                               for name, (_, size, parameters, flops) in ways.items()},
                      "images_per_s": speeds, "means": means}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
