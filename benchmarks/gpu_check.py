"""What the notebooks train on a GPU, measured: the `reference` preset with its recipe, `gpu-94` and `gpu-95`.

Each preset trains through `fit` for its full schedule (or at most --max-epochs, a stated part of it)
with the default 5,000-image validation split held out, so that every preset reports a validation
accuracy; then the test images are scored without TTA, with flip TTA and with flip-shift TTA. For each
it prints the minutes, images/s, peak GPU memory and the autocast dtype, and at the end one JSON line.
  python benchmarks/gpu_check.py --data DATA                   # on a CUDA machine
  python benchmarks/gpu_check.py --data DATA --max-epochs 3    # a stated part of each schedule
  python benchmarks/gpu_check.py --smoke                       # seconds on a CPU: checks that it runs
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

from cifar_resnet import evaluate, fit, get_preset, load_cifar10
from cifar_resnet.device import autocast_dtype, device_description, precision_name, select_device

PRESETS = ("reference", "gpu-94", "gpu-95")
TTA = ("off", "flip", "flip-shift")


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this run: allocated on the GPU, or the process's resident set on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def check(name: str, data, device: torch.device, max_epochs: int | None, smoke: bool) -> dict:
    """Train one preset (validation split held out) and measure it."""
    preset = get_preset(name)
    epochs = preset.train.epochs if max_epochs is None else min(preset.train.epochs, max_epochs)
    config = dataclasses.replace(preset.train, val_size=None, epochs=epochs)
    if smoke:
        config = dataclasses.replace(config, epochs=1, batch_size=32)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = fit(preset.model, config, data, device=device, progress=not smoke)
    last = result.history[-1]
    test = {mode: evaluate(result.model, data.test_images, data.test_labels, result.normalization, tta=mode).accuracy
            for mode in TTA}
    return {"preset": name, "epochs": last["epoch"], "of_epochs": preset.train.epochs,
            "val_acc": last["val_acc"], "test_acc": test, "minutes": last["elapsed"] / 60,
            "images_per_s": sum(h["images_per_s"] for h in result.history) / len(result.history),
            "peak_memory_mb": peak_memory_mb(device), "autocast": precision_name(autocast_dtype(config.amp, device))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding cifar-10-batches-py")
    parser.add_argument("--max-epochs", type=int, help="train each preset for at most this many epochs")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--smoke", action="store_true", help="10 images a class, one short epoch each, any device")
    args = parser.parse_args()
    device = select_device()
    if device.type != "cuda" and not args.smoke:
        sys.exit("gpu_check: no CUDA GPU is visible; run it on a GPU machine, or with --smoke to check that it runs")
    data = load_cifar10(args.data, smoke=args.smoke, train_per_class=10, test_per_class=5)
    print(f"{device_description(device)}; {data}", flush=True)
    results = [check(name, data, device, args.max_epochs, args.smoke) for name in args.presets]
    print(f"\n{'preset':<10} {'epochs':>9} {'val':>7} {'test':>7} {'flip':>7} {'flip-shift':>10} {'minutes':>8} "
          f"{'images/s':>9} {'peak MB':>9}  autocast")
    for r in results:
        print(f"{r['preset']:<10} {r['epochs']:>4} of {r['of_epochs']:<2} {r['val_acc']:>7.2%} "
              f"{r['test_acc']['off']:>7.2%} {r['test_acc']['flip']:>7.2%} {r['test_acc']['flip-shift']:>10.2%} "
              f"{r['minutes']:>8.2f} {r['images_per_s']:>9,.0f} {r['peak_memory_mb']:>9,.0f}  {r['autocast']}")
    print(json.dumps({"device": device_description(device), "date": datetime.date.today().isoformat(),
                      "torch": torch.__version__, "data": data.source, "synthetic": data.synthetic,
                      "results": results}))


if __name__ == "__main__":
    main()
