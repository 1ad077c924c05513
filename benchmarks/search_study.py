"""A design search measured on this machine, for notebook 06 and README: a study over the default space
(`search_space.DEFAULT_SPACE`, validation accuracy alone, successive halving) with a per-trial budget, then `cpu-fast`
and the other presets trained for the same budget and scored on the same validation split.

Resumable: the study lives in its journal file under --runs, so running the command again continues it up to
--trials, and preset rows already measured for the same budget are kept. Writes the study's trials, their counts
(finished, pruned after training, pruned untrained over the budget, failed), the best and the presets, stamped with
the machine and the date, to --out (the file notebook 06 reads).
  python benchmarks/search_study.py --data DATA --trials 24 --minutes-per-trial 2     # about an hour on 2 cores
  python benchmarks/search_study.py --smoke --trials 3 --epochs-per-trial 1 --out /tmp/search.json   # seconds
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
from pathlib import Path

import optuna
from experiments import machine

from cifar_resnet import experiments, load_cifar10
from cifar_resnet.config import ModelConfig
from cifar_resnet.files import atomic_write
from cifar_resnet.search import TrialBudget, leaderboard, open_search

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "cifar_resnet" / "measured" / "search.json"


def preset_variants(budget: TrialBudget) -> list[experiments.Variant]:
    """Each preset's network and recipe for the trials' budget, on the default validation split."""
    variants = experiments.preset_variants(budget.minutes or 1.0)
    if budget.epochs:
        variants = [dataclasses.replace(v, train=dataclasses.replace(v.train, minutes=None, epochs=budget.epochs))
                    for v in variants]
    return variants


def counts(trials: list[dict]) -> dict:
    """How the trials ended: finished, pruned after training, pruned untrained (over the budget, or not buildable)."""
    def pruned_untrained(row):
        return row["state"] == "PRUNED" and (row["invalid"] or row["parameters"] > 5_000_000)
    return {"finished": sum(row["state"] == "COMPLETE" for row in trials),
            "pruned after training": sum(row["state"] == "PRUNED" and not pruned_untrained(row) for row in trials),
            "pruned untrained": sum(pruned_untrained(row) for row in trials),
            "failed": sum(row["state"] == "FAIL" for row in trials)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="folder with CIFAR-10 (default: $CIFAR_RESNET_DATA, else ./data)")
    parser.add_argument("--study", default="cpu-search", help="the study's name (default cpu-search)")
    parser.add_argument("--trials", type=int, default=24, help="trials the study should hold in all")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes-per-trial", type=float)
    budget.add_argument("--epochs-per-trial", type=int)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "searches", help="the trials' run folders")
    parser.add_argument("--smoke", action="store_true", help="the small smoke subset (synthetic without data)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"where the results go (default {OUT})")
    args = parser.parse_args(argv)
    budget = TrialBudget(epochs=args.epochs_per_trial, minutes=args.minutes_per_trial)
    search = open_search(args.study, budget, out=args.runs)
    data = load_cifar10(args.data, smoke=args.smoke)
    print(f"{data}\n{machine()}", flush=True)
    remaining = args.trials - len(search.study.trials)
    if remaining > 0:
        search.run(remaining, data)
    board = leaderboard(search.study)

    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    kept = previous.get("presets", []) if previous.get("budget") == dataclasses.asdict(budget) else []
    done = {(v.model, v.train): row for v in preset_variants(budget) for row in kept if row["label"] == v.label}
    presets = experiments.compare(preset_variants(budget), data, done=done)

    drawn = {t.number: t for t in search.study.trials}  # Optuna's parameters, so the notebook can redraw the study
    trials = [{**{k: row[k] for k in ("number", "state", "value", "parameters", "retry_of", "pruned_at", "invalid")},
               "network": ModelConfig.from_dict(row["config"]["model"]).code() if row["config"] else None,
               "recipe": row["config"]["train"] if row["config"] else None,
               "params": drawn[row["number"]].params,
               "distributions": {name: optuna.distributions.distribution_to_json(d)
                                 for name, d in drawn[row["number"]].distributions.items()}}
              for row in board["trials"]]
    result = {"machine": machine(), "date": datetime.date.today().isoformat(),
              "command": "python benchmarks/search_study.py " + " ".join(argv or sys.argv[1:]),
              "data": repr(data), "budget": dataclasses.asdict(budget), "study": args.study,
              "space": json.loads(search.study.user_attrs["space"]), "counts": counts(board["trials"]),
              "best": next(t for t in trials if t["number"] == board["best"]["number"]) if board["best"] else None,
              "trials": trials, "presets": presets}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out) as f:
        json.dump(result, f, indent=1)
    print(json.dumps({"counts": result["counts"], "best": result["best"] and result["best"]["value"],
                      "presets": {row["label"]: row.get("val_acc") for row in presets}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
