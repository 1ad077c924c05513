"""Where each network's training time goes on this machine: cpu-fast's loop (`cifar_resnet.fit`) beside
airbench94's and airbench94_muon's (benchmarks/), each run for the same short time budget under torch.profiler.

Each operation's own time (without the operations it calls) is summed by kind: convolutions, matrix products
(Muon's Newton-Schulz iterations and the head), BatchNorm, activations, pooling, element-wise arithmetic (the
optimizers' updates and residual additions), copies and casts, indexing (the batches' crops, flips and shuffles)
and the rest. Prints milliseconds per 1,000 training images for each kind and network, then one JSON line.
cpu-fast's Trainer keeps the memory its steps free (`cifar_resnet.memory`); with --same-memory the baselines do too.
  python benchmarks/profile_training.py --seconds 40 --data DATA   # about 3 minutes
  python benchmarks/profile_training.py --smoke                    # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import airbench94
import airbench94_muon
from experiments import machine

from cifar_resnet import Normalization, fit, get_preset, load_cifar10
from cifar_resnet.device import Compute
from cifar_resnet.memory import kept_for_reuse

PRESET = "cpu-fast"
KINDS = {  # an operation's kind: the first whose words its name contains
    "convolution": ("conv",), "matrix product": ("mm", "matmul", "linear"), "BatchNorm": ("batch_norm",),
    "activation": ("gelu", "silu", "relu"), "pooling": ("pool",),
    "element-wise": ("add", "mul", "sub", "div", "lerp", "foreach", "sqrt", "norm", "addcmul", "neg"),
    "copy and cast": ("copy", "_to_", "to_copy", "contiguous", "clone", "empty", "zero", "fill"),
    "indexing": ("index", "flip", "where", "randperm", "cat", "gather", "scatter", "masked", "pad", "stack"),
}


def kind(name: str) -> str:
    name = name.lower()
    return next((k for k, words in KINDS.items() if any(w in name for w in words)), "other")


def train_cpu_fast(data, seconds: float) -> int:
    preset = get_preset(PRESET)
    config = dataclasses.replace(preset.train, minutes=seconds / 60, val_size=0)
    result = fit(preset.model, config, data, progress=False)
    return result.history[-1]["step"] * config.batch_size


def train_baseline(module, data, seconds: float) -> int:
    normalization = Normalization.from_images(data.train_images)
    _, run = module.train(data.train_images, data.train_labels, normalization, seconds / 60, 0, Compute.choose())
    return run["images"]


NETWORKS = {"airbench94": lambda data, s: train_baseline(airbench94, data, s),
            "airbench94_muon": lambda data, s: train_baseline(airbench94_muon, data, s),
            PRESET: train_cpu_fast}


def profiled(name: str, data, seconds: float, same_memory: bool) -> dict:
    """One time-budgeted run of network ``name`` under the profiler: images trained, and each kind's seconds;
    ``same_memory``: the baselines inside ``kept_for_reuse`` too, as cpu-fast's Trainer is."""
    kept = kept_for_reuse(Compute.choose().device) if same_memory else contextlib.nullcontext()
    with profile(activities=[ProfilerActivity.CPU]) as prof, kept:
        images = NETWORKS[name](data, seconds)
    by_kind = dict.fromkeys([*KINDS, "other"], 0.0)
    for event in prof.key_averages():
        by_kind[kind(event.key)] += event.self_cpu_time_total / 1e6
    return {"images": images, "seconds": by_kind, "total_seconds": sum(by_kind.values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40.0, help="training seconds for each network")
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--same-memory", action="store_true",
                        help="the baselines also keep freed memory for reuse, as cpu-fast's Trainer does on the CPU")
    parser.add_argument("--smoke", action="store_true", help="the small smoke subset, a few seconds each")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds = min(args.seconds, 2.0)
    data = load_cifar10(args.data, smoke=args.smoke)
    memory = "all keep" if args.same_memory else "cpu-fast's Trainer keeps, the baselines do not keep"
    print(f"{data}\n{machine()}\n{args.seconds:g} training seconds each, under torch.profiler; {memory} freed memory "
          f"for reuse (cifar_resnet.memory)", flush=True)
    runs = {name: profiled(name, data, args.seconds, args.same_memory) for name in NETWORKS}
    per_k = {name: {k: 1e6 * s / run["images"] for k, s in run["seconds"].items()} for name, run in runs.items()}
    print(f"\n{'ms per 1,000 images':<20}" + "".join(f"{name:>17}" for name in runs))
    for k in [*KINDS, "other"]:
        print(f"{k:<20}" + "".join(f"{per_k[name][k]:17.0f}" for name in runs))
    print(f"{'all':<20}" + "".join(f"{1e6 * run['total_seconds'] / run['images']:17.0f}" for run in runs.values()))
    print(f"{'images trained':<20}" + "".join(f"{run['images']:17,}" for run in runs.values()))
    print(json.dumps({"seconds": args.seconds, "same_memory": args.same_memory, "ms_per_1000_images": per_k,
                      "runs": runs, "machine": machine(), "date": datetime.date.today().isoformat()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
