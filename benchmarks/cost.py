"""How training cost grows on this machine: images/s and minutes per epoch of the course family's network
(cpu-fast's layout) against the batch size and the width, from real training steps timed here, and, from
runs of versus_airbench.py saved as JSON (--budgets), test accuracy against the minutes budget.

Each point times a few full training steps (forward, backward, optimizer; bf16 autocast where native) after a
warm-up step, with `cifar_resnet.train.estimate_training_time`, so it says what an epoch of 50,000 images costs
before a student starts. Prints a table and one JSON line, and draws --figure.
  python benchmarks/cost.py --figure benchmarks/figures/cost.png --budgets benchmarks/results/versus_*.txt
  python benchmarks/cost.py --smoke                                 # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from experiments import machine  # noqa: E402

import torch  # noqa: E402

from cifar_resnet import CifarData, count_parameters, get_preset  # noqa: E402
from cifar_resnet.plots import save_figure  # noqa: E402
from cifar_resnet.train import estimate_training_time  # noqa: E402

PRESET = "cpu-fast"
EPOCH_IMAGES = 50_000
OLD_KEYS = {PRESET: "cpu_fast_acc", "airbench94": "airbench_acc"}  # versus_airbench.py's JSON before --against


def measure(width: float, batch_size: int, data, steps: int) -> dict:
    preset = get_preset(PRESET)
    model = dataclasses.replace(preset.model, channels=tuple(round(c * width) for c in preset.model.channels))
    train = dataclasses.replace(preset.train, minutes=None, epochs=1, batch_size=batch_size)
    speed = estimate_training_time(model, train, data, steps=steps).images_per_s
    return {"width": width, "channels": list(model.channels), "parameters": count_parameters(model).total,
            "batch_size": batch_size, "images_per_s": speed, "epoch_minutes": EPOCH_IMAGES / speed / 60}


def read_budgets(paths: list[Path]) -> list[dict]:
    """The JSON lines of versus_airbench.py runs (one per file), by minutes budget."""
    return sorted((json.loads(path.read_text().strip().splitlines()[-1]) for path in paths),
                  key=lambda run: run["minutes"])


def test_accuracy(run: dict, name: str) -> float | None:
    """A versus_airbench.py run's test accuracy with TTA for network ``name`` (None where it did not train)."""
    if "means" in run:
        return run["means"][name]["acc"]["test"]["flip-shift"] if name in run["means"] else None
    return run.get(OLD_KEYS.get(name))


def figure(rows: list[dict], widths, batches, budgets: list[dict]):
    fig, axes = plt.subplots(1, 3 if budgets else 2, figsize=(15 if budgets else 10, 3.6))
    speed_ax, epoch_ax = axes[:2]
    for width in widths:
        points = [r for r in rows if r["width"] == width]
        label = f"{width:g}x width ({points[0]['parameters'] / 1e6:.2f}M parameters)"
        speed_ax.plot(batches, [r["images_per_s"] for r in points], "o-", label=label)
        epoch_ax.plot(batches, [r["epoch_minutes"] for r in points], "o-", label=label)
    for ax in (speed_ax, epoch_ax):
        ax.set(xscale="log", xlabel="batch size")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    speed_ax.set(ylabel="training images/s", title="throughput")
    epoch_ax.set(ylabel="minutes per epoch of 50,000 images", title="time per epoch")
    fig.legend(*epoch_ax.get_legend_handles_labels(), loc="lower center", ncol=len(widths), fontsize=8)
    if budgets:
        budget_figure(axes[2], budgets)
    fig.suptitle(f"{PRESET}'s layout on {machine()}", fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))  # room for the widths' legend below
    return fig


def budget_figure(ax, budgets: list[dict]) -> None:
    """Test accuracy (flip-shift TTA) of cpu-fast and airbench's designs against the minutes each trained."""
    for name in (PRESET, "airbench94", "airbench94_muon"):  # each run a dot, the mean over the runs of a budget a line
        points = [(run["minutes"], 100 * acc) for run in budgets if (acc := test_accuracy(run, name)) is not None]
        if not points:
            continue
        minutes = sorted({m for m, _ in points})
        line, = ax.plot(minutes, [statistics.mean(a for m, a in points if m == budget) for budget in minutes], "-",
                        label=f"{name} (mean of the runs)")
        ax.plot(*zip(*points), "o", color=line.get_color(), alpha=0.6)
    ax.set(xlabel="training minutes (the budget)", ylabel="test accuracy with TTA (%)",
           title=f"time to accuracy ({scored_images(budgets[0]):,} test images; a dot a run)")
    ax.set_xticks(sorted({run["minutes"] for run in budgets}))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def scored_images(run: dict) -> int:
    return run["scored"]["test"] if "scored" in run else run["scored_images"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=float, nargs="+", default=[0.5, 0.75, 1.0, 1.25])
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per point (after one warm-up step)")
    parser.add_argument("--figure", type=Path, help="where to draw the figure")
    parser.add_argument("--budgets", type=Path, nargs="*", default=[],
                        help="versus_airbench.py outputs (its JSON line last), one per minutes budget, to draw")
    parser.add_argument("--smoke", action="store_true", help="two small points: checks that it runs")
    args = parser.parse_args(argv)
    if args.smoke:
        args.widths, args.batches, args.steps = [0.25, 0.5], [16, 32], 1
    empty = torch.empty(0, 3, 32, 32, dtype=torch.uint8)
    n = max(args.batches)  # the timing trains on random images: the data only needs room for a batch
    data = CifarData(torch.zeros(n, 3, 32, 32, dtype=torch.uint8), torch.arange(n) % 10, empty,
                     torch.empty(0, dtype=torch.long), "blank images")
    print(machine())
    print(f"{'width':>6} {'parameters':>11} {'batch':>6} {'images/s':>9} {'min/epoch':>10}")
    rows = []
    for width in args.widths:
        for batch in args.batches:
            rows.append(measure(width, batch, data, args.steps))
            r = rows[-1]
            print(f"{width:>6g} {r['parameters']:>11,} {batch:>6} {r['images_per_s']:>9,.0f} {r['epoch_minutes']:>10.2f}",
                  flush=True)
    if args.figure:
        save_figure(figure(rows, args.widths, args.batches, read_budgets(args.budgets)), args.figure)
    print(json.dumps({"machine": machine(), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
