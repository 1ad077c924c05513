"""cpu-fast against airbench94, each trained for the same M minutes, side by side in one run on this machine.

airbench94 is re-implemented in benchmarks/airbench94.py (its network, recipe and test-time augmentation); cpu-fast
trains through `cifar_resnet.fit` as `python -m cifar_resnet train --preset cpu-fast --minutes M` does. Both train
on all 50,000 training images and are scored on the test batch of the data (here the 1,000 public test images),
without and with their test-time augmentation (flip-shift for both: airbench's level 2). With --split both hold
out the default 5,000-image validation split and are scored on it instead: choose on that, report on the test.
With --repeat N the pair runs N times, alternating which trains first. Prints a table, then one JSON line.
  python benchmarks/versus_airbench.py --minutes 10 --data DATA     # about 21 minutes
  python benchmarks/versus_airbench.py --smoke --minutes 0.03       # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys

import torch

import airbench94
from experiments import machine

from cifar_resnet import Normalization, evaluate, fit, get_preset, load_cifar10
from cifar_resnet.data import train_val_split
from cifar_resnet.device import Compute

PRESET = "cpu-fast"


def scores(model, images, labels, normalization) -> dict:
    return {mode: evaluate(model, images, labels, normalization, tta=mode).accuracy for mode in ("off", "flip-shift")}


def run_airbench(data, train_idx, scored, minutes: float, seed: int) -> dict:
    images, labels = data.train_images[train_idx], data.train_labels[train_idx]
    normalization = Normalization.from_images(images)
    model, run = airbench94.train(images, labels, normalization, minutes, seed, Compute.choose())
    return {**run, "acc": scores(model, *scored, normalization)}


def run_cpu_fast(data, split: bool, scored, minutes: float, seed: int) -> dict:
    preset = get_preset(PRESET)
    config = dataclasses.replace(preset.train, minutes=minutes, seed=seed, val_size=None if split else 0)
    result = fit(preset.model, config, data, progress=False)
    last = result.history[-1]
    per_epoch = len(train_val_split(data.train_labels, config.val_size)[0])
    images = last["step"] * min(config.batch_size, per_epoch)
    return {"steps": last["step"], "images": images, "epochs": images / per_epoch,
            "seconds": last["elapsed"], "images_per_s": images / last["elapsed"],
            "acc": scores(result.model, *scored, result.normalization)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes for each of the two")
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--split", action="store_true", help="hold out the validation split and score on it")
    parser.add_argument("--repeat", type=int, default=1, help="pairs to run, alternating which trains first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first pair (the next ones add 1)")
    parser.add_argument("--smoke", action="store_true", help="the small smoke subset (synthetic without data)")
    args = parser.parse_args(argv)
    data = load_cifar10(args.data, smoke=args.smoke)
    train_idx, val_idx = train_val_split(data.train_labels)
    if not args.split:
        train_idx = torch.arange(len(data.train_labels))
    scored = ((data.train_images[val_idx], data.train_labels[val_idx]) if args.split
              else (data.test_images, data.test_labels))
    where = "validation split" if args.split else "test batch"
    print(f"{data}\n{machine()}\n{args.minutes:g} minutes each, scored on the {where} ({len(scored[1]):,} images)",
          flush=True)
    runs = {"airbench94": [], PRESET: []}
    for k in range(args.repeat):
        seed = args.seed + k
        order = ["airbench94", PRESET] if k % 2 == 0 else [PRESET, "airbench94"]
        for name in order:
            run = (run_airbench(data, train_idx, scored, args.minutes, seed) if name == "airbench94"
                   else run_cpu_fast(data, args.split, scored, args.minutes, seed))
            runs[name].append(run)
            print(f"pair {k + 1}, seed {seed}, {name:<10} {run['epochs']:5.2f} epochs {run['images_per_s']:7.0f} "
                  f"images/s  {run['acc']['off']:.2%} plain  {run['acc']['flip-shift']:.2%} with TTA", flush=True)

    def mean(name, key, mode=None):
        return statistics.mean(r["acc"][mode] if mode else r[key] for r in runs[name])

    print(f"\n{'':<12} {'epochs':>7} {'images/s':>9} {'plain':>8} {'TTA':>8}   (means over {args.repeat} run(s))")
    for name in runs:
        print(f"{name:<12} {mean(name, 'epochs'):7.2f} {mean(name, 'images_per_s'):9.0f} "
              f"{mean(name, None, 'off'):8.2%} {mean(name, None, 'flip-shift'):8.2%}")
    gap = mean(PRESET, None, "flip-shift") - mean("airbench94", None, "flip-shift")
    print(f"cpu-fast - airbench94, with TTA: {100 * gap:+.2f} points")
    print(json.dumps({
        "airbench_acc": mean("airbench94", None, "flip-shift"), "cpu_fast_acc": mean(PRESET, None, "flip-shift"),
        "airbench_acc_no_tta": mean("airbench94", None, "off"), "cpu_fast_acc_no_tta": mean(PRESET, None, "off"),
        "minutes": args.minutes, "airbench_images_per_s": mean("airbench94", "images_per_s"),
        "cpu_fast_images_per_s": mean(PRESET, "images_per_s"), "airbench_epochs": mean("airbench94", "epochs"),
        "cpu_fast_epochs": mean(PRESET, "epochs"), "scored_on": where, "scored_images": len(scored[1]),
        "repeat": args.repeat, "machine": machine(), "date": datetime.date.today().isoformat(), "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
