"""cpu-fast's training step eager against torch.compile (`TrainConfig.compile`), side by side on this machine.

Both train the same preset's network through `cifar_resnet.train.Trainer.train_step` on one batch of real training
images, in the phase where the stem's bias is frozen (70% of a cpu-fast run). Each first times its first steps (the
compiled one compiles there), then the two alternate in rounds of a few steps, so that a change in the machine's
speed reaches both. Prints images/s per round, the ratio of the means, and one JSON line.
  python benchmarks/compile_speed.py --data DATA      # about 2 minutes
  python benchmarks/compile_speed.py --smoke          # the tiny preset on smoke data
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
import time

from experiments import machine

from cifar_resnet import get_preset, load_cifar10
from cifar_resnet.train import Trainer

FROZEN_PHASE = 0.5  # a share of the run after cpu-fast's stem bias has frozen (at 30%)


def trainer(preset_name: str, data, compiled: bool) -> Trainer:
    """A Trainer of the preset's network and recipe, compiled or eager, held in the frozen-bias phase."""
    preset = get_preset(preset_name)
    config = dataclasses.replace(preset.train, val_size=0, compile=compiled)
    trainer = Trainer(preset.model, config, data, None, device=None)
    trainer.clock.fraction_done = lambda step: FROZEN_PHASE
    trainer.batches.start_epoch(0)
    return trainer


def timed_steps(trainer: Trainer, batch, steps: int) -> float:
    """Seconds for ``steps`` training steps on ``batch``."""
    start = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step(*batch, lr=0.1)[0]
    loss.item()  # wait for the device
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-fast")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    parser.add_argument("--steps", type=int, default=6, help="steps per round (and first steps)")
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--smoke", action="store_true", help="the tiny preset on the smoke subset, 1 step a round")
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset, args.rounds, args.steps = "tiny", 2, 1
    data = load_cifar10(args.data, smoke=args.smoke)
    print(f"{data}\n{machine()}\n{args.preset}: {args.rounds} alternating rounds of {args.steps} steps", flush=True)
    ways = {"eager": False, "compiled": True}
    trainers, first, speeds = {}, {}, {way: [] for way in ways}
    for way, compiled in ways.items():
        trainers[way] = trainer(args.preset, data, compiled)
        batch = trainers[way].batches.batch(0)
        first[way] = timed_steps(trainers[way], batch, args.steps)
        print(f"{way:<9} first {args.steps} steps: {first[way]:.1f} s", flush=True)
    for k in range(args.rounds):
        for way, t in trainers.items():
            batch = t.batches.batch(0)
            speeds[way].append(args.steps * len(batch[0]) / timed_steps(t, batch, args.steps))
            print(f"round {k + 1} {way:<9} {speeds[way][-1]:7.0f} images/s", flush=True)
    means = {way: statistics.mean(s) for way, s in speeds.items()}
    print(f"compiled / eager: {means['compiled'] / means['eager']:.2f}x images/s "
          f"({means['compiled']:.0f} against {means['eager']:.0f})")
    print(json.dumps({"preset": args.preset, "machine": machine(), "date": datetime.date.today().isoformat(),
                      "steps": args.steps, "first_seconds": first, "images_per_s": speeds, "means": means}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
