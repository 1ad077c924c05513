"""What glibc's malloc costs training and predicting on the CPU, and what `cifar_resnet.memory.kept_for_reuse` saves.

Times cpu-fast's step (`Trainer.train_step`, batch 512, the frozen-stem-bias phase) and airbench94's (batch 1,024)
as step_speed.py builds them, and cpu-fast's network predicting 2,048 images with flip-shift TTA (`predict_logits`,
as evaluation and the Kaggle submission run it), each with glibc's malloc as it is and inside `kept_for_reuse`
(large blocks served from the heap and never handed back), in alternating rounds. Each way runs in a process of its
own, as a fresh notebook kernel would: in one process, the heap that one way grew would serve the next. For each it
counts the minor page faults (pages the kernel had to zero and map) and the system seconds the process spent, per
image, after two warm-up steps, and the process's peak resident memory while it steps (data and model included).
Prints a line a round and way, the means, and one JSON line.
  python benchmarks/memory_reuse.py --data DATA      # about 6 minutes
  python benchmarks/memory_reuse.py --smoke          # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

from compare import peak_rss_mb
from experiments import machine
from step_speed import FROZEN_PHASE, airbench94_step, cpu_fast_trainer, timing_options

from cifar_resnet import Normalization, get_preset, load_cifar10
from cifar_resnet.device import Compute
from cifar_resnet.evaluate import predict_logits
from cifar_resnet.memory import kept_for_reuse
from cifar_resnet.model import build_model

PREDICTING = "cpu-fast predicting"
NETWORKS = ("airbench94", "cpu-fast", PREDICTING)
WARM_UP_STEPS = 2  # the heap grows to what a step needs
PREDICTED_IMAGES = 2048  # a step of predicting: two of evaluation's batches, six views each (flip-shift TTA)
SETTINGS = {"as it is": lambda device: contextlib.nullcontext(), "kept for reuse": kept_for_reuse}


def per_1000_images(step, batch: int, steps: int) -> dict:
    """Milliseconds, minor page faults and system milliseconds per 1,000 images over ``steps`` steps."""
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    per = 1000 / (steps * batch)
    return {"ms": 1000 * seconds * per, "page_faults": (after.ru_minflt - before.ru_minflt) * per,
            "system_ms": 1000 * (after.ru_stime - before.ru_stime) * per}


def cpu_fast_predicting(data, compute: Compute):
    """cpu-fast's network predicting with flip-shift TTA, as `evaluate` and the Kaggle submission do; the images."""
    model = build_model(get_preset("cpu-fast").model)
    normalization = Normalization.from_images(data.train_images)
    images = data.train_images[:PREDICTED_IMAGES]
    return (lambda: predict_logits(model, images, normalization, tta="flip-shift", compute=compute)), len(images)


def measured(network: str, setting: str, steps: int, data_dir: str | None, smoke: bool) -> dict:
    """One way's figures, in this process: ``network``'s step, with glibc's malloc as ``setting`` says (also inside
    `predict_logits`, which keeps memory for reuse itself)."""
    data = load_cifar10(data_dir, smoke=smoke)
    compute = Compute.choose()
    if network == "airbench94":
        step, batch = airbench94_step(data, compute)
    elif network == PREDICTING:
        step, batch = cpu_fast_predicting(data, compute)
    else:
        trainer, x, y = cpu_fast_trainer(data, compiled=False, fraction_done=FROZEN_PHASE)
        step, batch = (lambda: trainer.train_step(x, y, lr=0.1)), len(x)
    evaluation = importlib.import_module("cifar_resnet.evaluate")  # the module: the package's `evaluate` is a function
    reset_peak_rss()  # the peak from here on: loading the data peaks higher than any step
    with SETTINGS[setting](compute.device), mock.patch.object(evaluation, "kept_for_reuse", SETTINGS[setting]):
        for _ in range(WARM_UP_STEPS):
            step()
        return {**per_1000_images(step, batch, steps), "peak_rss_mb": peak_rss_mb()}


def reset_peak_rss() -> None:
    """Start the process's peak resident memory afresh from what is resident now (Linux; elsewhere it stays)."""
    clear_refs = Path("/proc/self/clear_refs")
    if clear_refs.exists():
        clear_refs.write_text("5")


def in_fresh_process(network: str, setting: str, args) -> dict:
    command = [sys.executable, __file__, "--one", network, setting, "--steps", str(args.steps)]
    command += ["--data", args.data] if args.data else []
    command += ["--smoke"] if args.smoke else []
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    timing_options(parser, rounds=3)
    parser.add_argument("--one", nargs=2, metavar=("NETWORK", "SETTING"), help=argparse.SUPPRESS)  # a way's process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measured(*args.one, args.steps, args.data, args.smoke)))
        return 0
    if args.smoke:
        args.rounds, args.steps = 1, 1
    print(f"{load_cifar10(args.data, smoke=args.smoke)}\n{machine()}\n{args.rounds} alternating rounds of "
          f"{args.steps} steps each, each way in a fresh process", flush=True)
    results = {f"{name}, {setting}": [] for name in NETWORKS for setting in SETTINGS}
    for k in range(args.rounds):
        for name in NETWORKS:
            for setting in SETTINGS:
                row = in_fresh_process(name, setting, args)
                results[f"{name}, {setting}"].append(row)
                print(f"round {k + 1} {f'{name}, {setting}':<36} {row['ms']:7.1f} ms {row['page_faults']:9,.0f} page "
                      f"faults {row['system_ms']:7.1f} system ms per 1,000 images, peak RSS "
                      f"{row['peak_rss_mb']:,.0f} MB", flush=True)
    means = {way: {key: statistics.mean(row[key] for row in rows) for key in rows[0]} for way, rows in results.items()}
    print(f"\n{'means per 1,000 images':<36} {'ms':>9} {'page faults':>12} {'system ms':>10} {'/ as it is':>11} "
          f"{'peak RSS MB':>12}")
    for way, mean in means.items():
        as_it_is = means[way.split(",")[0] + ", as it is"]["ms"]
        print(f"{way:<36} {mean['ms']:9.1f} {mean['page_faults']:12,.0f} {mean['system_ms']:10.1f} "
              f"{as_it_is / mean['ms']:10.2f}x {mean['peak_rss_mb']:12,.0f}")
    print(f"cpu-fast / airbench94 images/s, each as it is: "
          f"{means['airbench94, as it is']['ms'] / means['cpu-fast, as it is']['ms']:.2f}x; each kept for reuse: "
          f"{means['airbench94, kept for reuse']['ms'] / means['cpu-fast, kept for reuse']['ms']:.2f}x; cpu-fast "
          f"kept for reuse, airbench94 as it is: "
          f"{means['airbench94, as it is']['ms'] / means['cpu-fast, kept for reuse']['ms']:.2f}x")
    print(json.dumps({"machine": machine(), "date": datetime.date.today().isoformat(), "steps": args.steps,
                      "per_1000_images": results, "means": means}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
