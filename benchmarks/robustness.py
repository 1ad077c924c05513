"""Robustness in CIFAR-10-C's terms, measured: trains a preset (or takes a run folder), then scores it on every
corruption of `cifar_resnet.corruptions` at every severity, four ways:

  as trained   the model as it is (BatchNorm on its training statistics)
  predict      what `python -m cifar_resnet predict` does by default: BatchNorm re-estimated on a set when its
               shift check fires
  always       BatchNorm re-estimated on every set
  tent         TENT (entropy minimization of BatchNorm's shifts, one Adam step per batch of 200), on every set

on the test images (the final table) and on 1,000 of the run's 5,000 validation images (for choices), every
run on the same corrupted sets (seed 0). Merges
one entry per run into --out (cifar_resnet/measured/robustness.json, which notebook 04 reads) with the machine and the date, as each lands.
`table` prints the Markdown tables README and notebook 04 show, with each run's corruption errors relative to
--baseline.
  python benchmarks/robustness.py train --preset cpu-fast --seed 0 --name cpu-fast-s0 --data DATA   # ~20 min
  python benchmarks/robustness.py train --preset cpu-fast --seed 0 --set noise=0.2 --name noise-s0 --data DATA
  python benchmarks/robustness.py measure --run runs/course --name mine --data DATA
  python benchmarks/robustness.py table --baseline cpu-fast-s0
  python benchmarks/robustness.py train --preset tiny --minutes 0.05 --smoke --out /tmp/r.json --name t  # seconds
Training: the preset's recipe for --minutes (default 15, the notebooks' CPU budget) or --epochs, holding out 5,000
validation images as the notebooks do.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import tempfile
from pathlib import Path

from experiments import machine

from cifar_resnet import fit, get_preset, load_cifar10, load_model
from cifar_resnet.adaptation import entropy_minimized
from cifar_resnet.cli import _parse_setting
from cifar_resnet.corruptions import CORRUPTIONS, SEVERITIES
from cifar_resnet.data import train_val_split
from cifar_resnet.files import atomic_write
from cifar_resnet.robustness import (MEASURED_FILE, CorruptionResult, corrupted_sets, remedies_table, score_set,
                                     severity_table, summarize)

OUT = MEASURED_FILE
MODES = ("as trained", "predict", "always", "tent")
VALIDATION_IMAGES = 1000  # of the run's validation split, scored for choices
VAL_SIZE = 5000  # held out in training, as the notebooks do


def measure(model, checkpoint, images, labels, modes=MODES, corruptions=CORRUPTIONS,
            severities=SEVERITIES) -> dict[str, list[dict]]:
    """{mode: its results as dicts} on every corrupted set of ``images``, each set made once for all modes."""
    normalization, shares = checkpoint.normalization, checkpoint.class_shares
    adapt = {"as trained": "off", "predict": "auto", "always": "always"}
    results = {mode: [] for mode in modes}
    for corruption, severity, x in corrupted_sets(images, corruptions, severities):
        for mode in modes:
            net = entropy_minimized(model, x, normalization) if mode == "tent" else model
            result = score_set(net, x, labels, normalization, shares, corruption, severity,
                               adapt=adapt.get(mode, "off"))
            if mode == "tent":
                result = dataclasses.replace(result, recalibrated=True)
            results[mode].append(result.to_dict())
        print(f"{corruption:<18} {severity}  " + "  ".join(f"{m} {results[m][-1]['accuracy']:.3f}" for m in modes),
              flush=True)
    return results


def measure_run(run_dir: Path, data, validation_images: int, modes=MODES) -> dict:
    """The run's entry: how it was trained, and its results on the test images and its validation images."""
    model, checkpoint = load_model(run_dir / "checkpoint.pt")
    config = checkpoint.train_config
    entry = {"machine": machine(), "date": datetime.date.today().isoformat(), "run": str(run_dir),
             "model": checkpoint.model_config.to_dict() if hasattr(checkpoint.model_config, "to_dict") else None,
             "train": config.to_dict(), "epochs": checkpoint.epoch, "scored": {}}
    sets = {"test": (data.test_images, data.test_labels)}
    if config.val_size != 0 and validation_images:
        _, val = train_val_split(data.train_labels, config.val_size, config.seed)
        val = val[:validation_images]
        sets["validation"] = (data.train_images[val], data.train_labels[val])
    for name, (images, labels) in sets.items():
        print(f"{run_dir}: {len(labels):,} {name} images", flush=True)
        results = measure(model, checkpoint, images, labels, modes)
        entry["scored"][name] = {"images": len(labels), "results": results,
                                 "summary": {mode: summarize([CorruptionResult(**r) for r in rows])
                                             for mode, rows in results.items()}}
    return entry


def merge(out: Path, name: str, entry: dict) -> None:
    entries = json.loads(out.read_text()) if out.exists() else {}
    entries[name] = entry
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as f:
        json.dump(entries, f, indent=1)
        f.write("\n")


def train_run(args, data, run_dir: Path) -> Path:
    preset = get_preset(args.preset)
    length = dict(minutes=None, epochs=args.epochs) if args.epochs else dict(minutes=args.minutes)
    config = dataclasses.replace(preset.train, **length, seed=args.seed,
                                 val_size=min(VAL_SIZE, len(data.train_labels) // 5),
                                 **dict(_parse_setting(s) for s in args.set))
    fit(preset.model, config, data, run_dir, resume=True)
    return run_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("train", "measure", "table"))
    parser.add_argument("--name", help="the entry's name in --out")
    parser.add_argument("--preset", default="cpu-fast")
    parser.add_argument("--minutes", type=float, default=15.0, help="train: the time budget")
    parser.add_argument("--epochs", type=int, help="train: this many epochs instead of a time budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a change to the recipe")
    parser.add_argument("--run", type=Path, help="measure: the run folder; train: where to train (default: a "
                                                 "temporary folder)")
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--smoke", action="store_true", help="smoke data, a few images")
    parser.add_argument("--validation-images", type=int, default=VALIDATION_IMAGES,
                        help="how many of the run's validation images to score (0: the test images only)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--baseline", help="table: the entry whose errors normalize the corruption errors")
    parser.add_argument("--scored", default="test", choices=("test", "validation"), help="table: which images")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if args.action == "table":
        entries = json.loads(args.out.read_text())
        print(remedies_table(entries, args.baseline, args.scored))
        for name in entries:
            if args.scored in entries[name]["scored"]:
                rows = [CorruptionResult(**r) for r in entries[name]["scored"][args.scored]["results"]["predict"]]
                print(f"\n{name}, through predict ({entries[name]['machine']}, {entries[name]['date']}):\n")
                print(severity_table(rows))
        return 0
    if not args.name:
        parser.error("--name is needed to train or measure")
    data = load_cifar10(args.data, smoke=args.smoke or None)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.run if args.action == "measure" else train_run(args, data, args.run or Path(scratch) / "run")
        entry = measure_run(run_dir, data, args.validation_images, tuple(args.modes))
    merge(args.out, args.name, entry)
    for scored in entry["scored"]:
        print(f"{args.name} on the {scored} images:",
              json.dumps({mode: s for mode, s in entry["scored"][scored]["summary"].items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
