"""Where cpu-fast's training step stands against airbench94's in steady state, side by side on this machine.

Times, in alternating rounds so that a change in the machine's speed reaches all of them: airbench94's whole step
(benchmarks/airbench94.py: batch 1,024, Nesterov SGD), cpu-fast's whole step (`cifar_resnet.train.Trainer.train_step`:
batch 512, Muon and SGD, lookahead), the same with every weight gradient oneDNN's (`cifar_resnet.conv.SMALL_MAP`
at 0, as before the small maps' gradients became matrix products), the same step with the optimizer's update left
out and that update alone, and its whole step under torch.compile (`TrainConfig.compile`, whose first steps compile and
are timed apart). Every step is of the phase after the stem's bias has frozen (70% of a run, for both), on real
training images, except the two whole steps named "stem bias learning" (the first 30%: the first conv then also
needs the gradient of its input). Prints images/s per round, the means and their ratios, then one JSON line.
  python benchmarks/step_speed.py --data DATA      # a few minutes
  python benchmarks/step_speed.py --smoke          # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import time
from unittest import mock

import torch
from torch import nn

import airbench94
from experiments import machine

from cifar_resnet import Normalization, conv, get_preset, load_cifar10
from cifar_resnet.config import ModelConfig
from cifar_resnet.device import Compute
from cifar_resnet.train import Trainer

PRESET = "cpu-fast"
FROZEN_PHASE = 0.5  # a share of the run after both stems' biases have frozen (at 30%)
LEARNING_PHASE = 0.1  # a share of the run while they still learn


def airbench94_step(data, compute: Compute, bias_learns: bool = False):
    """airbench94's training step on one of its batches (whitening bias frozen unless ``bias_learns``), and the
    batch's size."""
    images, labels = data.train_images, data.train_labels
    normalization = Normalization.from_images(images)
    generator = torch.Generator().manual_seed(0)
    net = airbench94.make_net()
    airbench94.init_whitening(net[0], normalization(images[:5000]))
    net[0].bias.requires_grad = bias_learns
    optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-3, momentum=airbench94.MOMENTUM,
                                nesterov=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=airbench94.LABEL_SMOOTHING, reduction="sum")
    batch = min(airbench94.BATCH, len(images))
    x, y = next(airbench94.batches(airbench94.prepared_images(images, normalization, generator), labels, 0, batch,
                                   generator))

    def step():
        with compute.autocast():
            loss = criterion(net(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step, batch


def cpu_fast_trainer(data, compiled: bool, fraction_done: float, network: ModelConfig | None = None):
    """A Trainer of cpu-fast's recipe (on ``network``, by default cpu-fast's own) that stays at ``fraction_done`` of
    its run, and its first batch."""
    preset = get_preset(PRESET)
    trainer = Trainer(network or preset.model, dataclasses.replace(preset.train, val_size=0, compile=compiled), data,
                      None, device=None)
    trainer.clock.fraction_done = lambda step: fraction_done
    trainer.batches.start_epoch(0)
    return (trainer, *trainer.batches.batch(0))


def cpu_fast_steps(data, compiled: bool) -> tuple[dict, int]:
    """cpu-fast's whole step (compiled or eager), and for the eager one the same while the stem's bias learns, with
    oneDNN's weight gradients, without the optimizer's update, and that update alone; the batch's size."""
    trainer, x, y = cpu_fast_trainer(data, compiled, FROZEN_PHASE)
    whole = {"compiled" if compiled else "eager": lambda: trainer.train_step(x, y, lr=0.1)}
    if compiled:
        return whole, len(x)

    learning, x_learning, y_learning = cpu_fast_trainer(data, compiled, LEARNING_PHASE)

    def onednn_weight_gradients():
        with mock.patch.object(conv, "SMALL_MAP", 0):
            trainer.train_step(x, y, lr=0.1)

    def forward_backward():
        with mock.patch.object(trainer.optimizer, "step", lambda *args, **kwargs: None):
            trainer.train_step(x, y, lr=0.1)

    def optimizer_step():  # the whole step, timing only the optimizer's part
        optimizer_seconds, step = [], trainer.optimizer.step

        def timed_step(*args, **kwargs):
            start = time.perf_counter()
            step(*args, **kwargs)
            optimizer_seconds.append(time.perf_counter() - start)
        with mock.patch.object(trainer.optimizer, "step", timed_step):
            trainer.train_step(x, y, lr=0.1)
        return optimizer_seconds[0]
    return {**whole, "eager, stem bias learning": lambda: learning.train_step(x_learning, y_learning, lr=0.1),
            "eager, oneDNN's weight gradients": onednn_weight_gradients,
            "forward and backward": forward_backward, "optimizer step": optimizer_step}, len(x)


def timing_options(parser: argparse.ArgumentParser, rounds: int) -> None:
    """The options of a script that times steps in alternating rounds: --rounds, --steps, --data and --smoke."""
    parser.add_argument("--rounds", type=int, default=rounds, help="alternating rounds")
    parser.add_argument("--steps", type=int, default=4, help="steps per round, for each way")
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--smoke", action="store_true", help="the smoke subset, 1 step a round: checks that it runs")


def seconds(step, steps: int) -> float:
    """Seconds per step over ``steps`` steps (a step that times itself returns its own seconds)."""
    total, start = 0.0, time.perf_counter()
    for _ in range(steps):
        own = step()
        total += own if isinstance(own, float) else 0.0
    return (total or time.perf_counter() - start) / steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    timing_options(parser, rounds=4)
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.steps = 2, 1
    data = load_cifar10(args.data, smoke=args.smoke)
    compute = Compute.choose()
    print(f"{data}\n{machine()}\n{args.rounds} alternating rounds of {args.steps} steps each", flush=True)
    airbench, airbench_batch = airbench94_step(data, compute)
    airbench_learning, _ = airbench94_step(data, compute, bias_learns=True)
    eager, batch = cpu_fast_steps(data, compiled=False)
    compiled, _ = cpu_fast_steps(data, compiled=True)
    ways = {"airbench94": (airbench, airbench_batch),
            "airbench94, stem bias learning": (airbench_learning, airbench_batch),
            **{f"{PRESET} {name}": (step, batch) for name, step in {**eager, **compiled}.items()}}
    warm_up = {}
    for name, (step, _) in ways.items():  # allocations, kernel choice, and the compiler's work
        warm_up[name] = seconds(step, args.steps) * args.steps
        print(f"{name:<42} first {args.steps} steps: {warm_up[name]:.1f} s", flush=True)
    speeds = {name: [] for name in ways}
    for k in range(args.rounds):
        for name, (step, size) in ways.items():
            speeds[name].append(size / seconds(step, args.steps))
            print(f"round {k + 1} {name:<42} {speeds[name][-1]:8.0f} images/s", flush=True)
    means = {name: statistics.mean(s) for name, s in speeds.items()}
    print(f"\n{'means':<42} {'ms a step':>9} {'images/s':>9} {'/ airbench94':>13}")
    for name, mean in means.items():
        print(f"{name:<42} {1000 * ways[name][1] / mean:9.1f} {mean:9.0f} {mean / means['airbench94']:12.2f}x")
    print(json.dumps({"machine": machine(), "date": datetime.date.today().isoformat(), "steps": args.steps,
                      "batch": {"airbench94": airbench_batch, PRESET: batch}, "warm_up_seconds": warm_up,
                      "images_per_s": speeds, "means": means}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
