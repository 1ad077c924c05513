"""The notebooks' measured experiments: each variant trained for the same minutes, side by side, in one run.

Runs the lists of `cifar_resnet.experiments` on the training set with the default 5,000-image
validation split held out: airbench94's tricks added one at a time, its batch size and SGD against Muon (notebook 03),
its augmentations (notebook 01), every preset for the same minutes (notebook 02), cpu-fast's stem bias frozen part-way
or not, Muon's rate and momentum, and hiverge's changes and batches of 1,024 (README's B6), and the course's techniques for the same epochs (notebooks 01 and 03). Each variant is scored on
the validation split, plain and with flip-shift test-time augmentation. Writes the rows, stamped with
the machine and the date, to --out (the file the notebooks read), and prints each table and one JSON line.
  python benchmarks/experiments.py --data DATA                      # 3 minutes a variant, about an hour
  python benchmarks/experiments.py --data DATA --only batches --minutes 5  # the batch sizes, two seeds
  python benchmarks/experiments.py --data DATA --only optimizers --minutes 5  # SGD and Muon, two seeds
  python benchmarks/experiments.py --data DATA --only stem_bias --minutes 5 --out stem_bias.json  # README B6
  python benchmarks/experiments.py --data DATA --only muon_rates --minutes 5 --out muon_rates.json  # README B6
  python benchmarks/experiments.py --data DATA --only hiverge --minutes 5 --out hiverge.json  # README B6
  python benchmarks/experiments.py --data DATA --only techniques --resume  # the course's techniques, 20 epochs each
  python benchmarks/experiments.py --data DATA --only techniques --seeds 1 --resume  # their second seed
  python benchmarks/experiments.py --smoke --minutes 0.02 --out /tmp/x.json   # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

from cifar_resnet import experiments, load_cifar10
from cifar_resnet.data import train_val_split
from cifar_resnet.device import Compute
from cifar_resnet.files import atomic_write

OUT = Path(__file__).resolve().parents[1] / "cifar_resnet" / "measured" / experiments.MEASURED_FILE
TIMED = {"tricks": experiments.trick_variants, "batches": experiments.batch_variants,  # each variant for --minutes
         "optimizers": experiments.optimizer_variants, "stem_bias": experiments.stem_bias_variants,
         "muon_rates": experiments.muon_rate_variants, "hiverge": experiments.hiverge_variants,
         "augmentations": experiments.augmentation_variants, "presets": experiments.preset_variants}
EPOCHS = {"techniques": experiments.technique_variants}  # each variant for --epochs, once per seed of --seeds
LISTS = sorted({**TIMED, **EPOCHS})


def cpu_name() -> str:
    """The processor's model name (from /proc/cpuinfo on Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    return f"{cpu_name()}, {Compute.choose()}, torch {torch.__version__}"


def variants(name: str, args) -> list[experiments.Variant]:
    if name in TIMED:
        return TIMED[name](args.minutes)
    return [v for seed in args.seeds for v in EPOCHS[name](args.epochs, seed)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="training minutes per variant (timed lists)")
    parser.add_argument("--epochs", type=int, default=experiments.TECHNIQUE_EPOCHS,
                        help="training epochs per variant (techniques)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of the techniques list")
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--only", choices=LISTS, action="append", help="run only these lists")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows --out already holds for the same variant and recipe; train the rest")
    parser.add_argument("--smoke", action="store_true", help="the small smoke subset (synthetic without data)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the results go (default {OUT})")
    args = parser.parse_args(argv)
    data = load_cifar10(args.data, smoke=args.smoke)
    train_idx, val_idx = train_val_split(data.train_labels)
    names = args.only or sorted(TIMED)
    print(f"{data}\n{machine()}", flush=True)
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    done = {}  # (network, recipe) -> row: a variant that closes more than one list trains once
    for name in names:
        length = {"minutes": args.minutes} if name in TIMED else {"epochs": args.epochs}
        stamp = {"machine": machine(), "date": datetime.date.today().isoformat(), **length,
                 "train_images": len(train_idx), "val_images": len(val_idx), "data": data.source,
                 "command": " ".join(["python", "benchmarks/experiments.py", *(argv or sys.argv[1:])])}
        kept = {(r["label"], json.dumps(r.get("recipe"), sort_keys=True)): r
                for r in results.get(name, {}).get("rows", [])} if args.resume else {}
        print(f"\n{name}: " + ", ".join(f"{v:g} {k}" for k, v in length.items()) + " each", flush=True)
        print(experiments.HEADER, flush=True)
        rows = []
        for variant in variants(name, args):
            key = (variant.label, json.dumps(variant.train.to_dict(), sort_keys=True))
            if key in kept:
                rows.append(kept[key])
                print(experiments.format_row(kept[key]) + "  (kept)", flush=True)
            else:
                rows.append(experiments.compare([variant], data, done=done)[0])
            results[name] = {**stamp, "rows": rows}
            with atomic_write(args.out, "w") as f:  # after every row: a long run keeps what it measured
                f.write(json.dumps(results, indent=1) + "\n")
    print(json.dumps({name: results[name]["rows"] for name in names}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
