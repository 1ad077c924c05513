"""Where a whole run's time goes, for cpu-fast and airbench94: its steps at the steady rate, and what comes on top.

Trains each network for M minutes as versus_airbench.py does (on the 45,000 images outside the validation split),
noting the moment each batch is asked for: cpu-fast's `TrainingBatches.batch`, airbench94's `batches` generator.
The time from one request to the next is one step with all that happens around it. The steady step is the median
of the plain steps (neither the first steps, nor one next to an epoch's or an augmentation chunk's start) once the
stem's bias has frozen (for cpu-fast after 30% of the run, for airbench94 from the first epoch begun after 30%). On
top of steps x steady step, a run spends time on:
  - the first steps (oneDNN choosing and building its kernels, memory first touched);
  - the learning phase (the stem's bias learns, so the first block also needs its input's gradient);
  - epoch boundaries (airbench94 crops and flips the whole epoch; cpu-fast ends the last epoch and augments the first
    chunk) and cpu-fast's chunk boundaries;
  - the spread of the other frozen-phase steps around their median;
  - before the first request and after the last (airbench94 prepares its images and whitening inside its clock,
    cpu-fast's Trainer before it starts its clock; the last step).
cpu-fast's Trainer keeps the memory its steps free (`cifar_resnet.memory`); with --same-memory airbench94 does too.
Prints a table a round (each part in seconds and as a share of its run), the mean ratios, and one JSON line.
  python benchmarks/run_timeline.py --data DATA --minutes 3               # about 7 minutes
  python benchmarks/run_timeline.py --data DATA --minutes 2 --repeat 2    # both orders: about 10 minutes
  python benchmarks/run_timeline.py --smoke --minutes 0.15                # seconds: checks that it runs
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import time
from unittest import mock

import airbench94
from experiments import machine
from versus_airbench import run_baseline, run_cpu_fast

from cifar_resnet import get_preset, load_cifar10
from cifar_resnet.augment import TrainingBatches
from cifar_resnet.data import train_val_split
from cifar_resnet.device import Compute
from cifar_resnet.memory import kept_for_reuse

NETWORKS = ("airbench94", "cpu-fast")
FIRST_STEPS = 3
PARTS = ("first steps", "learning phase", "epoch and chunk boundaries", "frozen-phase spread", "outside the steps")


def cpu_fast_requests(marks: list):
    """A patch noting (time, batch begins an epoch, batch begins an augmentation chunk) whenever cpu-fast asks for
    a batch."""
    batch = TrainingBatches.batch

    def noted(self, i):
        marks.append((time.perf_counter(), i == 0, i % self.per_chunk == 0))
        return batch(self, i)
    return mock.patch.object(TrainingBatches, "batch", noted)


def airbench94_requests(marks: list):
    """A patch noting (time, batch begins an epoch, the same) whenever airbench94 asks its loader for a batch."""
    batches = airbench94.batches

    def noted(*args):
        epoch, first = batches(*args), True
        while True:
            marks.append((time.perf_counter(), first, first))
            try:
                item = next(epoch)
            except StopIteration:  # the epoch is over: no step followed this request
                marks.pop()
                return
            first = False
            yield item
    return mock.patch.object(airbench94, "batches", noted)


def breakdown(marks: list, seconds: float, images_per_step: int, learns_until: float, learns_by_epoch: bool) -> dict:
    """The run's ``seconds`` as steps x steady step plus each part of PARTS, from its batch requests ``marks``.
    The stem's bias learns for the first ``learns_until`` of the run, or with ``learns_by_epoch`` through every
    epoch begun before then (airbench94's)."""
    if len(marks) < 2:
        raise SystemExit(f"a run of {len(marks)} step(s) has no step to time from one request to the next: give it "
                         "more --minutes")
    start, epoch_began, steps = marks[0][0], 0.0, []
    for k, ((t, new_epoch, new_chunk), (t_next, _, next_chunk)) in enumerate(zip(marks, marks[1:])):
        at = (t - start) / seconds
        epoch_began = at if new_epoch else epoch_began
        if k < FIRST_STEPS:
            part = "first steps"
        elif new_chunk or next_chunk:  # the work between epochs falls to the step before the next one's first request
            part = "epoch and chunk boundaries"
        else:
            learning = (epoch_began if learns_by_epoch else at) < learns_until
            part = "learning phase" if learning else "frozen-phase spread"
        steps.append((t_next - t, part))
    frozen = [d for d, p in steps if p == "frozen-phase spread"]
    steady = statistics.median(frozen or [d for d, _ in steps])  # smoke runs may have no plain frozen step
    extra = dict.fromkeys(PARTS, 0.0)
    for d, p in steps:
        extra[p] += d - steady
    extra["outside the steps"] = seconds - (marks[-1][0] - start) - steady  # the last request's step counts here
    return {"steps": len(marks), "steady_step_s": steady, "steady_images_per_s": images_per_step / steady,
            "images_per_s": len(marks) * images_per_step / seconds, "seconds": seconds, "extra_s": extra}


def timed_run(name: str, data, train_idx, minutes: float, seed: int, same_memory: bool) -> dict:
    """Network ``name`` trained for ``minutes`` as versus_airbench.py trains it, and its run's breakdown;
    ``same_memory``: airbench94 inside ``kept_for_reuse`` too, as cpu-fast's Trainer is."""
    marks = []
    if name == "cpu-fast":
        with cpu_fast_requests(marks):
            run = run_cpu_fast(data, train_idx, {}, minutes, seed)
        learns_until = get_preset(name).train.stem_bias_until
    else:
        kept = kept_for_reuse(Compute.choose().device) if same_memory else contextlib.nullcontext()
        with airbench94_requests(marks), kept:
            run = run_baseline(name, data, train_idx, {}, minutes, seed)
        learns_until = airbench94.WHITEN_BIAS_UNTIL
    return breakdown(marks, run["seconds"], run["images"] // run["steps"], learns_until,
                     learns_by_epoch=name == "airbench94")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="training minutes for each network")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds, airbench94 first in odd ones and cpu-fast first in even ones")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first round (the next ones add 1)")
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--same-memory", action="store_true",
                        help="airbench94 also keeps its freed memory for reuse, as cpu-fast's Trainer does on the CPU")
    parser.add_argument("--smoke", action="store_true", help="the small smoke subset (synthetic without data)")
    args = parser.parse_args(argv)
    data = load_cifar10(args.data, smoke=args.smoke)
    train_idx, _ = train_val_split(data.train_labels)
    memory = "both keep" if args.same_memory else "cpu-fast's Trainer keeps, airbench94 does not keep"
    print(f"{data}\n{machine()}\n{args.minutes:g} minutes each on {len(train_idx):,} images; {memory} freed "
          f"memory for reuse (cifar_resnet.memory)", flush=True)
    rounds = []
    for k in range(args.repeat):
        order = NETWORKS if k % 2 == 0 else NETWORKS[::-1]
        rounds.append({name: timed_run(name, data, train_idx, args.minutes, args.seed + k, args.same_memory)
                       for name in order})
        print_round(k, args.seed + k, rounds[-1])
    ratios = [cpu_fast_ratios(runs) for runs in rounds]
    means = {key: statistics.mean(r[key] for r in ratios) for key in ratios[0]}
    print(f"\ncpu-fast / airbench94 images/s, the mean of {len(rounds)} round(s): "
          f"{means['steady_images_per_s']:.2f}x at the steady step, {means['images_per_s']:.2f}x over the run")
    print(json.dumps({"minutes": args.minutes, "seed": args.seed, "same_memory": args.same_memory, "rounds": rounds,
                      "ratios": ratios, "mean_ratios": means, "machine": machine(),
                      "date": datetime.date.today().isoformat()}))
    return 0


def print_round(k: int, seed: int, runs: dict) -> None:
    """Round ``k``'s table: a column a network, in the order they ran."""
    print(f"\n{f'round {k + 1}, seed {seed}':<32}" + "".join(f"{name:>20}" for name in runs))
    rows = [("steps", lambda r: f"{r['steps']:,}"), ("steady step", lambda r: f"{1000 * r['steady_step_s']:.1f} ms"),
            ("images/s at the steady step", lambda r: f"{r['steady_images_per_s']:,.0f}"),
            ("images/s over the run", lambda r: f"{r['images_per_s']:,.0f}"),
            ("steps x steady step", lambda r: share(r["steps"] * r["steady_step_s"], r["seconds"]))]
    rows += [(f"+ {p}", lambda r, p=p: share(r["extra_s"][p], r["seconds"])) for p in PARTS]
    for label, cell in rows:
        print(f"{label:<32}" + "".join(f"{cell(r):>20}" for r in runs.values()), flush=True)
    ratios = cpu_fast_ratios(runs)
    print(f"cpu-fast / airbench94 images/s: {ratios['steady_images_per_s']:.2f}x at the steady step, "
          f"{ratios['images_per_s']:.2f}x over the run")


def cpu_fast_ratios(runs: dict) -> dict:
    """cpu-fast's images/s over airbench94's, at the steady step and over the run."""
    return {key: runs["cpu-fast"][key] / runs["airbench94"][key] for key in ("steady_images_per_s", "images_per_s")}


def share(seconds: float, total: float) -> str:
    return f"{seconds:.1f} s ({seconds / total:.1%})"


if __name__ == "__main__":
    raise SystemExit(main())
