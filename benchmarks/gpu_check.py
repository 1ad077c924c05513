"""What the notebooks train on a GPU, measured: every GPU preset with its recipe, and cpu-fast as a student would run it there.

Each preset trains through `fit` for its schedule (at most --max-epochs epochs, or --minutes for a time-budgeted
recipe such as cpu-fast's, each a stated part of it) with the default 5,000-image validation split held out, so
that every preset reports a validation accuracy; then the test images are scored without TTA, with flip TTA and
with flip-shift TTA. It prints a Markdown table for README.md (the GPU's name and the date above it: minutes,
images/s, peak memory, precision, accuracies) and, last, one JSON line.
  bash benchmarks/gpu_check.sh                                  # a bare GPU machine with ../shared: all of it
  python benchmarks/gpu_check.py --data DATA                    # on a CUDA machine
  python benchmarks/gpu_check.py --data DATA --max-epochs 3 --minutes 2   # a stated part of each schedule
  python benchmarks/gpu_check.py --smoke                        # seconds on a CPU: checks that it runs
Data: --data, else $CIFAR_RESNET_DATA (CIFAR-10 in the official layout); --smoke uses 10 images a class.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import resource
import sys

import torch

from cifar_resnet import PRESETS as ALL_PRESETS
from cifar_resnet import evaluate, fit, get_preset, load_cifar10
from cifar_resnet.device import device_description, select_device

PRESETS = tuple(name for name in ("course", "reference", "gpu-94", "gpu-95", "cpu-fast") if name in ALL_PRESETS)
TTA = ("off", "flip", "flip-shift")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this run: allocated on the GPU, or the process's resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def recipe(name: str, max_epochs: int | None, minutes: float | None, smoke: bool):
    """The preset's recipe with the validation split held out, cut to the stated part of its schedule."""
    config = dataclasses.replace(get_preset(name).train, val_size=None)
    if smoke:
        return dataclasses.replace(config, minutes=None, epochs=1, batch_size=32)
    if config.minutes:
        return dataclasses.replace(config, minutes=min(config.minutes, minutes or config.minutes))
    return dataclasses.replace(config, epochs=min(config.epochs, max_epochs or config.epochs))


def check(name: str, data, device: torch.device, max_epochs: int | None, minutes: float | None, smoke: bool) -> dict:
    """Train one preset (validation split held out) and measure it."""
    preset, config = get_preset(name), recipe(name, max_epochs, minutes, smoke)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = fit(preset.model, config, data, device=device, progress=not smoke)
    last, compute = result.history[-1], result.plan.compute
    test = {mode: evaluate(result.model, data.test_images, data.test_labels, result.normalization, tta=mode,
                           compute=compute).accuracy for mode in TTA}
    of = "smoke" if smoke else f"{preset.train.minutes:g} min" if preset.train.minutes else f"{preset.train.epochs} epochs"
    return {"preset": name, "epochs": last["epoch"], "of": of, "val_acc": last["val_acc"], "test_acc": test,
            "val_images": len(result.plan.val_indices), "test_images": len(data.test_labels),
            "minutes": last["elapsed"] / 60,
            "images_per_s": sum(h["images_per_s"] for h in result.history) / len(result.history),
            "peak_memory_mb": peak_memory_mb(device), "precision": compute.precision}


def table(results: list[dict], device: str, date: str) -> str:
    """The results as the Markdown table README.md carries, under a line naming the GPU and the date."""
    lines = [f"{device}, {date}, torch {torch.__version__}; validation: {results[0]['val_images']:,} held-out "
             f"training images, test: {results[0]['test_images']:,} test images", "",
             "| preset | epochs (of) | minutes | images/s | peak memory | precision | val | test | flip TTA "
             "| flip-shift TTA |", "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        acc = r["test_acc"]
        lines.append(f"| {r['preset']} | {r['epochs']} ({r['of']}) | {r['minutes']:.2f} | {r['images_per_s']:,.0f} "
                     f"| {r['peak_memory_mb']:,.0f} MB | {r['precision']} | {r['val_acc']:.2%} | {acc['off']:.2%} "
                     f"| {acc['flip']:.2%} | {acc['flip-shift']:.2%} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding cifar-10-batches-py")
    parser.add_argument("--max-epochs", type=int, help="train each epoch-length preset for at most this many epochs")
    parser.add_argument("--minutes", type=float, help="train each time-budgeted preset (cpu-fast) for at most this long")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--smoke", action="store_true", help="10 images a class, one short epoch each, any device")
    args = parser.parse_args()
    device = select_device()
    if device.type != "cuda" and not args.smoke:
        sys.exit("gpu_check: no CUDA GPU is visible; run it on a GPU machine, or with --smoke to check that it runs")
    data = load_cifar10(args.data, smoke=args.smoke, train_per_class=10, test_per_class=5)
    print(f"{device_description(device)}; {data}", flush=True)
    results = [check(name, data, device, args.max_epochs, args.minutes, args.smoke) for name in args.presets]
    date = datetime.date.today().isoformat()
    print("\n" + table(results, device_description(device), date) + "\n")
    print(json.dumps({"device": device_description(device), "date": date, "torch": torch.__version__,
                      "data": data.source, "synthetic": data.synthetic, "results": results}))


if __name__ == "__main__":
    main()
