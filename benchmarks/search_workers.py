"""Trials per hour of a search with one and with two worker processes on this machine, for notebook 06 and README.

Every trial trains the same network and recipe (`cpu-fast`'s, fixed in the space) for the same epochs, so that
only the number of workers changes. Each setting is a fresh study in its own folder: W processes run
`python -m cifar_resnet search` on it at once (the embedded journal storage, shared by the processes on this
machine), each running --trials-per-worker trials. The wall clock runs from the first start to the last exit, data
loading included, as a student running the command would see it. Two workers are measured twice: with PyTorch's
default threads in each (the command as typed), and with OMP_NUM_THREADS=1 in each (the cores split between them).
Each setting's row is written as it lands; a run again keeps the rows measured with the same trials.
  python benchmarks/search_workers.py --data DATA                          # about 20 minutes on 2 cores
  python benchmarks/search_workers.py --smoke --out /tmp/workers.json      # seconds
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments import machine

from cifar_resnet.config import get_preset
from cifar_resnet.files import atomic_write
from cifar_resnet.search import leaderboard, load_study

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "cifar_resnet" / "measured" / "search_workers.json"
SETTINGS = ["1", "2", "2:1"]  # WORKERS[:OMP_NUM_THREADS in each]; without threads, PyTorch's default


def setting(text: str) -> tuple[int, int | None]:
    """'2:1' is two workers of one thread each; '2' is two workers with PyTorch's default threads."""
    workers, _, threads = text.partition(":")
    return int(workers), int(threads) if threads else None


def fixed_space(preset: str) -> dict:
    """A space with nothing to choose: the preset's network and recipe in every trial."""
    model = get_preset(preset).model
    return {"base": preset,
            "model": {"style": model.style, "stages": model.stages, "blocks": [[b] for b in model.blocks],
                      "channels": [[c] for c in model.channels], "kernel": [[k] for k in model.kernel],
                      "skip_kernel": [[k] for k in model.skip_kernel], "pool": model.pool}}


def run_setting(workers: int, threads: int | None, args, space: Path, folder: Path) -> dict:
    """W workers on one fresh study; their trials, wall clock and trials per hour."""
    command = [sys.executable, "-m", "cifar_resnet", "search", "--study", "throughput", "--space", str(space),
               "--trials", str(args.trials_per_worker), "--epochs-per-trial", str(args.epochs_per_trial),
               "--out", str(folder), *(["--data", args.data] if args.data else []), *(["--smoke"] if args.smoke else [])]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}  # embedded storage: see main
    logs = [folder / f"worker-{i}.log" for i in range(workers)]
    folder.mkdir(parents=True)
    start = time.perf_counter()
    processes = [subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env) for log in logs]
    codes = [p.wait() for p in processes]
    seconds = time.perf_counter() - start
    if any(codes):
        tails = "\n".join(log.read_text()[-2000:] for log in logs)
        raise SystemExit(f"a worker failed (exit {codes}):\n{tails}")
    study = load_study("throughput", folder)
    board = leaderboard(study)
    trained = [(t.datetime_complete - t.datetime_start).total_seconds() for t in study.trials if t.state.name == "COMPLETE"]
    row = {"workers": workers, "threads_per_worker": threads or "default", "trials": len(board["trials"]),
           "complete": len(trained), "seconds": round(seconds, 1),
           "seconds_per_trial": round(sum(trained) / max(1, len(trained)), 1),
           "trials_per_hour": round(len(trained) / seconds * 3600, 1)}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--preset", default="cpu-fast", help="the network and recipe every trial trains")
    parser.add_argument("--epochs-per-trial", type=int, default=1)
    parser.add_argument("--trials-per-worker", type=int, default=2)
    parser.add_argument("--settings", nargs="+", type=setting, default=[setting(s) for s in SETTINGS], metavar="W[:T]",
                        help="W workers, each with OMP_NUM_THREADS=T where given (default: 1 2 2:1)")
    parser.add_argument("--smoke", action="store_true", help="the small smoke subset (synthetic without data)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the results go (default {OUT})")
    args = parser.parse_args(argv)
    os.environ.pop("CIFAR_RESNET_STORAGE", None)  # every study here is a fresh embedded one, never a team's database
    print(machine(), flush=True)
    how = {"preset": args.preset, "epochs_per_trial": args.epochs_per_trial,
           "trials_per_worker": args.trials_per_worker, "smoke": args.smoke}
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    rows = [row for row in previous.get("rows", []) if all(previous.get(k) == v for k, v in how.items())]
    with tempfile.TemporaryDirectory(prefix="search-workers-") as tmp:
        space = Path(tmp) / "space.json"
        space.write_text(json.dumps(fixed_space(args.preset)))
        for workers, threads in args.settings:
            if any((r["workers"], r["threads_per_worker"]) == (workers, threads or "default") for r in rows):
                continue  # measured before with the same trials: kept
            folder = Path(tmp) / f"{workers}-workers-{threads or 'default'}-threads"
            rows.append(run_setting(workers, threads, args, space, folder))
            save(args, how, rows)  # each setting as it lands
    save(args, how, rows)
    return 0


def save(args, how: dict, rows: list[dict]) -> None:
    result = {"machine": machine(), "cores": os.cpu_count(), "date": datetime.date.today().isoformat(),
              "command": "python benchmarks/search_workers.py " + " ".join(sys.argv[1:]), **how, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
