"""cpu-fast against airbench's designs, each trained for the same M minutes, side by side in one run on this machine.

The baselines (--against, one or more): airbench94 (benchmarks/airbench94.py) and airbench94_muon
(benchmarks/airbench94_muon.py), each re-implemented with its network, recipe and test-time augmentation; cpu-fast
trains through `cifar_resnet.fit` as `python -m cifar_resnet train --preset cpu-fast --minutes M` does. All train
on the same images, all 50,000 training images, and are scored on the test batch of the data (here the 1,000 public
test images), without and with their test-time augmentation (flip-shift for all: airbench's level 2). With --split
all hold out the default 5,000-image validation split beforehand (so none scores it inside its time budget) and
are scored on it after training as well as on the test batch: choose on the validation split. With --repeat N the
networks run N times, in an order that turns by one each time. Each network's training FLOP/s is also given as a
share of a large matrix product's, timed at the start of the run (benchmarks/utilization.py).
With --channels C1 C2 C3 cpu-fast's recipe trains its network at those stage widths instead: a candidate network.
Prints a table, then one JSON line.
  python benchmarks/versus_airbench.py --minutes 10 --data DATA                        # about 21 minutes
  python benchmarks/versus_airbench.py --against airbench94_muon airbench94 --split --minutes 5   # about 16 minutes
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
import airbench94_muon
from experiments import machine
from utilization import MATMUL_SIZE, matmul_peak, run_flops_per_image

from cifar_resnet import Normalization, evaluate, fit, get_preset, load_cifar10
from cifar_resnet.config import ModelConfig
from cifar_resnet.data import train_val_split
from cifar_resnet.device import Compute
from cifar_resnet.errors import CifarResnetError

PRESET = "cpu-fast"
BASELINES = {"airbench94": airbench94, "airbench94_muon": airbench94_muon}  # each: train(), WHITEN_BIAS_UNTIL
MODES = ("off", "flip-shift")


def scores(model, scored: dict, normalization) -> dict:
    """{set: {TTA mode: accuracy}} for each scored set of (images, labels)."""
    return {name: {mode: evaluate(model, images, labels, normalization, tta=mode).accuracy for mode in MODES}
            for name, (images, labels) in scored.items()}


def run_baseline(name: str, data, train_idx, scored: dict, minutes: float, seed: int) -> dict:
    images, labels = data.train_images[train_idx], data.train_labels[train_idx]
    normalization = Normalization.from_images(images)
    baseline = BASELINES[name]
    model, run = baseline.train(images, labels, normalization, minutes, seed, Compute.choose())
    return {**run, "flops_per_image": run_flops_per_image(model, "0.bias", baseline.WHITEN_BIAS_UNTIL),
            "acc": scores(model, scored, normalization)}


def run_cpu_fast(data, train_idx, scored: dict, minutes: float, seed: int, network: ModelConfig | None = None
                 ) -> dict:
    """cpu-fast's recipe training ``network`` (by default its own) on the baselines' training images: with the split
    held out beforehand, its run has no validation split of its own to score each epoch inside the time budget (the
    baselines score none either)."""
    preset = get_preset(PRESET)
    network = network or preset.model
    config = dataclasses.replace(preset.train, minutes=minutes, seed=seed, val_size=0)
    training = dataclasses.replace(data, train_images=data.train_images[train_idx],
                                   train_labels=data.train_labels[train_idx])
    result = fit(network, config, training, progress=False)
    last = result.history[-1]
    images = last["step"] * min(config.batch_size, len(train_idx))
    return {"steps": last["step"], "images": images, "epochs": images / len(train_idx),
            "seconds": last["elapsed"], "images_per_s": images / last["elapsed"],
            "flops_per_image": run_flops_per_image(result.model, "stem.0.bias", config.stem_bias_until),
            "acc": scores(result.model, scored, result.normalization)}


def summary(runs: list[dict], peak: float) -> dict:
    """The means over one network's runs: epochs, images/s, the share of the matmul peak its training FLOP/s
    reached, and each set's accuracy per TTA mode."""
    return {"epochs": statistics.mean(r["epochs"] for r in runs),
            "images_per_s": statistics.mean(r["images_per_s"] for r in runs),
            "gflops_per_image": runs[0]["flops_per_image"] / 1e9,
            "utilization": statistics.mean(r["images_per_s"] * r["flops_per_image"] for r in runs) / peak,
            "acc": {name: {mode: statistics.mean(r["acc"][name][mode] for r in runs) for mode in MODES}
                    for name in runs[0]["acc"]}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="training minutes for each network")
    parser.add_argument("--against", nargs="+", choices=sorted(BASELINES), default=["airbench94"],
                        help="the baselines to train beside cpu-fast (default: airbench94)")
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--split", action="store_true",
                        help="hold out the validation split and score on it as well as on the test batch")
    parser.add_argument("--repeat", type=int, default=1, help="rounds to run, turning the order by one each time")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first round (the next ones add 1)")
    parser.add_argument("--channels", type=int, nargs="+",
                        help="train cpu-fast's network at these stage widths instead of its own (a candidate)")
    parser.add_argument("--smoke", action="store_true", help="the small smoke subset (synthetic without data)")
    args = parser.parse_args(argv)
    network = get_preset(PRESET).model
    if args.channels:
        try:
            network = dataclasses.replace(network, channels=tuple(args.channels))
        except CifarResnetError as e:
            parser.error(f"--channels: {e}")
    data = load_cifar10(args.data, smoke=args.smoke)
    train_idx, val_idx = train_val_split(data.train_labels)
    if not args.split:
        train_idx = torch.arange(len(data.train_labels))
    scored = {"test": (data.test_images, data.test_labels)}
    if args.split:
        scored = {"validation": (data.train_images[val_idx], data.train_labels[val_idx]), **scored}
    sets = ", ".join(f"the {name} images ({len(labels):,})" for name, (_, labels) in scored.items())
    print(f"{data}\n{machine()}\n{args.minutes:g} minutes each, trained on {len(train_idx):,} images, scored on "
          f"{sets}; {PRESET}'s network: {network}", flush=True)
    peak = matmul_peak(Compute.choose())
    print(f"practical peak: {peak / 1e12:.2f} TFLOP/s (a {MATMUL_SIZE}x{MATMUL_SIZE} matrix product, this run)",
          flush=True)
    names = [*args.against, PRESET]
    runs = {name: [] for name in names}
    for k in range(args.repeat):
        seed = args.seed + k
        for name in names[k % len(names):] + names[:k % len(names)]:
            run = (run_cpu_fast(data, train_idx, scored, args.minutes, seed, network) if name == PRESET
                   else run_baseline(name, data, train_idx, scored, args.minutes, seed))
            runs[name].append(run)
            accuracies = "  ".join(f"{s} {a['off']:.2%} plain, {a['flip-shift']:.2%} TTA"
                                   for s, a in run["acc"].items())
            print(f"round {k + 1}, seed {seed}, {name:<15} {run['epochs']:5.2f} epochs {run['images_per_s']:7.0f} "
                  f"images/s  {accuracies}", flush=True)

    means = {name: summary(runs[name], peak) for name in names}
    print(f"\n{'':<16} {'epochs':>7} {'images/s':>9} {'GFLOPs':>7} {'of peak':>8}"
          + "".join(f" {s + ' plain':>17} {s + ' TTA':>15}" for s in scored) + f"   (means over {args.repeat} run(s))")
    for name, m in means.items():
        print(f"{name:<16} {m['epochs']:7.2f} {m['images_per_s']:9.0f} {m['gflops_per_image']:7.3f} "
              f"{m['utilization']:8.1%}" +
              "".join(f" {m['acc'][s]['off']:17.2%} {m['acc'][s]['flip-shift']:15.2%}" for s in scored))
    gaps = {against: {s: means[PRESET]["acc"][s]["flip-shift"] - means[against]["acc"][s]["flip-shift"]
                      for s in scored} for against in args.against}
    for against, by_set in gaps.items():
        print(f"cpu-fast - {against}, with TTA: "
              + ", ".join(f"{100 * g:+.2f} points ({s})" for s, g in by_set.items()))
    print(json.dumps({
        "minutes": args.minutes, "against": args.against, "split": args.split, "seed": args.seed,
        "repeat": args.repeat, "network": network.to_dict(),
        "scored": {name: len(labels) for name, (_, labels) in scored.items()}, "matmul_peak_flops": peak,
        "means": means, "tta_gaps": gaps, "machine": machine(),
        "date": datetime.date.today().isoformat(), "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
