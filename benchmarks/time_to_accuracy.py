"""B4 time to accuracy: `cifar_resnet train --preset cpu-fast --minutes M` beside the reference recipe
trained for the same M minutes, in one run on this machine.

cpu-fast runs twice, as the command line runs it (a fresh process each): as the preset is, on all
the training images, for its test accuracy; and with the default validation split held out
(`--set val_size=none`), for its accuracy-vs-minutes curve (its clock includes its per-epoch
validation). The reference recipe (benchmarks/reference.py) trains on that same split and is
scored on the validation images at a few points, with its clock paused while it is scored.
All three end with the accuracy on the test images. Prints a table, then one JSON line; writes
the accuracy-vs-minutes figure to --figure.
  python benchmarks/time_to_accuracy.py                  # 15 minutes each, about 50 minutes in all
  python benchmarks/time_to_accuracy.py --smoke --minutes 0.1   # seconds: checks that it runs
Data: $CIFAR_RESNET_DATA (real CIFAR-10), or the synthetic smoke data with --smoke.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

from reference import REFERENCE, reference_loader, reference_optimizer

from cifar_resnet import Normalization, build_model, evaluate, get_preset, load_cifar10, load_model, read_history
from cifar_resnet.budget import count_training_flops
from cifar_resnet.data import train_val_split
from cifar_resnet.device import Compute, device_description, select_device
from cifar_resnet.plots import save_figure

PRESET = "cpu-fast"
FLOAT32 = Compute.choose("cpu", amp="off")  # how the reference recipe computes


def train_cpu_fast(minutes: float, out: Path, smoke: bool, *flags: str) -> list[dict]:
    """`python -m cifar_resnet train --preset cpu-fast --minutes M --out OUT [flags]`, exactly as a user runs it."""
    command = [sys.executable, "-m", "cifar_resnet", "train", "--preset", PRESET, "--minutes", str(minutes),
               "--out", str(out), *flags] + (["--smoke"] if smoke else [])
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True)
    return read_history(out)


def tta_accuracies(model: nn.Module, checkpoint, images, labels) -> dict[str, float]:
    """The accuracy of a trained run's model on ``images`` without TTA and with each TTA mode."""
    return {mode: evaluate(model, images, labels, checkpoint.normalization, tta=mode).accuracy
            for mode in ("off", "flip", "flip-shift")}


def train_reference(data, train_idx, val_idx, normalization, minutes: float, points: int) -> tuple[list[dict], nn.Module]:
    """The reference recipe for ``minutes`` of training time, scored on the validation split ``points`` times."""
    torch.manual_seed(0)
    model = build_model(REFERENCE)
    loader = reference_loader(data.train_images[train_idx], data.train_labels[train_idx], normalization)
    optimizer, schedule = reference_optimizer(model, len(loader))
    criterion = nn.CrossEntropyLoss()
    val_x, val_y = data.train_images[val_idx], data.train_labels[val_idx]
    marks = [minutes * 60 * (k + 1) / points for k in range(points)]
    curve, seen, paused = [], 0, 0.0
    start = time.perf_counter()
    while marks:
        for x, y in loader:  # the clock runs while the loader works too, as it does for the user
            loss = criterion(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(y)
            trained = time.perf_counter() - start - paused
            if trained >= marks[0]:
                scoring = time.perf_counter()
                curve.append({"minutes": trained / 60, "images": seen,
                              "val_acc": evaluate(model, val_x, val_y, normalization, compute=FLOAT32).accuracy})
                paused += time.perf_counter() - scoring
                print(f"reference recipe: {curve[-1]}", flush=True)
                marks.pop(0)
                if not marks:
                    break
    return curve, model


def with_tta(accuracies: dict[str, float]) -> str:
    return ", ".join(f"{100 * a:.2f}% (TTA {mode})" for mode, a in accuracies.items())


def accuracy_figure(reference: list[dict], project: list[dict], minutes: float):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p["minutes"] for p in reference], [100 * p["val_acc"] for p in reference], "-s",
            label="reference recipe (4.9M-parameter ResNet, PIL pipeline, float32)")
    ax.plot([h["elapsed"] / 60 for h in project], [100 * h["val_acc"] for h in project], "-o", ms=4,
            label=f"cifar_resnet --preset {PRESET} (validation split held out)")
    ax.axhline(90, color="gray", lw=0.8, ls="--", label="the 90% goal")
    ax.set(xlabel="training time (minutes)", ylabel="validation accuracy (%)", xlim=(0, minutes * 1.02),
           ylim=(0, 100), title="accuracy vs. minutes on this CPU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="training time of each run")
    parser.add_argument("--points", type=int, default=3, help="validation scores of the reference run")
    parser.add_argument("--out", default="runs/benchmark-b4", help="folder for the cpu-fast runs")
    parser.add_argument("--figure", help="where to save the accuracy-vs-minutes figure (default: in --out)")
    parser.add_argument("--smoke", action="store_true", help="tiny subset or synthetic data: checks that it runs")
    args = parser.parse_args(argv)
    out = Path(args.out)

    device = select_device("cpu")
    data = load_cifar10(smoke=args.smoke)
    preset = get_preset(PRESET)
    train_idx, val_idx = train_val_split(data.train_labels, None, preset.train.seed)  # the default split
    print(f"{data}\ndevice: {device_description(device)}; torch {torch.__version__}", flush=True)

    full = train_cpu_fast(args.minutes, out / PRESET, args.smoke)
    model, checkpoint = load_model(out / PRESET / "checkpoint.pt", "cpu")
    project_test = tta_accuracies(model, checkpoint, data.test_images, data.test_labels)
    split_dir = out / f"{PRESET}-val-split"
    history = train_cpu_fast(args.minutes, split_dir, args.smoke, "--set", "val_size=none")
    model, checkpoint = load_model(split_dir / "checkpoint.pt", "cpu")
    split_test = tta_accuracies(model, checkpoint, data.test_images, data.test_labels)
    split_val = tta_accuracies(model, checkpoint, data.train_images[val_idx], data.train_labels[val_idx])

    normalization = Normalization.from_images(data.train_images[train_idx])
    curve, reference_model = train_reference(data, train_idx, val_idx, normalization, args.minutes, args.points)
    reference_test = evaluate(reference_model, data.test_images, data.test_labels, normalization,
                              compute=FLOAT32).accuracy  # float32, as the reference does

    print(f"\nvalidation accuracy, both trained on the split\n{'minutes':>8} {'reference':>10} {PRESET:>10}")
    for point in curve:
        done = [h for h in history if h["elapsed"] <= point["minutes"] * 60 + 1]
        ours = f"{100 * done[-1]['val_acc']:.2f}%" if done else "-"
        print(f"{point['minutes']:>8.1f} {100 * point['val_acc']:>9.2f}% {ours:>10}")
    print(f"{PRESET} with the split held out, validation: {with_tta(split_val)}")
    print(f"test accuracy on {len(data.test_labels):,} images: reference {100 * reference_test:.2f}%\n"
          f"  {PRESET} on all {len(data.train_labels):,} training images: {with_tta(project_test)}\n"
          f"  {PRESET} with the split held out: {with_tta(split_test)}")
    figure = Path(args.figure) if args.figure else out / "time_to_accuracy.png"
    save_figure(accuracy_figure(curve, history, args.minutes), figure)
    steps = full[-1]["step"] if full else 0
    pflops = count_training_flops(preset.model, preset.train.whiten_stem) * steps * preset.train.batch_size / 1e15
    print(f"{PRESET} on all images trained on {steps * preset.train.batch_size:,} images in {len(full)} epochs: "
          f"{pflops:.3f} PFLOPs (forward and backward)")
    print(json.dumps({"minutes": args.minutes, "cpu_fast_pflops": pflops, "reference_curve": curve,
                      "reference_test_acc": reference_test, "cpu_fast_test_acc": project_test,
                      "cpu_fast_epochs": [{k: h[k] for k in ("epoch", "elapsed", "images_per_s")} for h in full],
                      "cpu_fast_curve": [{k: h[k] for k in ("epoch", "elapsed", "val_acc", "images_per_s")}
                                         for h in history],
                      "cpu_fast_split_val_acc": split_val, "cpu_fast_split_test_acc": split_test,
                      "figure": str(figure), "data": data.source, "synthetic": data.synthetic,
                      "device": device_description(device)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
