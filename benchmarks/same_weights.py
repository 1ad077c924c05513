"""Seeded runs whose weights a change to the training loop must leave equal (torch.equal), saved or compared.

  python benchmarks/same_weights.py --save DIR      # before the change: train the runs and save their weights
  python benchmarks/same_weights.py --compare DIR   # after it: train them again and compare, tensor by tensor
The runs: the 'tiny' preset as it is, and cpu-fast's network and recipe (Muon, lookahead, the whitened stem,
bf16 where the CPU has it) for two epochs in batches of 128; both on the smoke data with 100 images held out,
on the CPU with 2 threads. Exits 1 when a tensor differs.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from cifar_resnet import fit, get_preset, load_cifar10


def runs() -> dict:
    tiny, cpu_fast = get_preset("tiny"), get_preset("cpu-fast")
    return {"tiny": (tiny.model, dataclasses.replace(tiny.train, val_size=100)),
            "cpu-fast": (cpu_fast.model, dataclasses.replace(cpu_fast.train, minutes=None, epochs=2, batch_size=128,
                                                             val_size=100))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--save", type=Path, metavar="DIR")
    action.add_argument("--compare", type=Path, metavar="DIR")
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = load_cifar10(smoke=True)
    differ = 0
    for name, (network, recipe) in runs().items():
        weights = fit(network, recipe, data, device="cpu", progress=False).model.state_dict()
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            torch.save(weights, args.save / f"{name}.pt")
            print(f"{name}: {len(weights)} tensors saved to {args.save / f'{name}.pt'}")
            continue
        before = torch.load(args.compare / f"{name}.pt", weights_only=True)
        unequal = [key for key in before if not torch.equal(before[key], weights[key])]
        differ += len(unequal)
        print(f"{name}: {len(before) - len(unequal)} of {len(before)} tensors equal" +
              (f"; differ: {', '.join(unequal)}" if unequal else ""))
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
