"""A study measured on this machine, as ``benchmarks/search_study.py`` commits it (``measured/search.json``): read,
printed, and rebuilt as an in-memory Optuna study, so that Optuna's plots can draw it without its storage."""
from __future__ import annotations

import json
from importlib import resources

from .search import OBJECTIVES, TrialBudget, plural

RECORD_FILE = "search.json"


def load_record(name: str = RECORD_FILE) -> dict | None:
    """The committed record, or None where no study has been measured yet."""
    found = resources.files("cifar_resnet").joinpath("measured", name)
    return json.loads(found.read_text()) if found.is_file() else None


def record_study(record: dict, objectives: tuple[str, ...] = ("accuracy",)):
    """The record's trials as an in-memory study: every trial with its state and score for ("accuracy",); only the
    finished ones, on both axes, for ("accuracy", "parameters") (a Pareto front). Trial numbers are the record's
    for the first; the record's number is each trial's user attribute ``number``."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" line
    study = optuna.create_study(directions=[OBJECTIVES[name] for name in objectives])
    optuna.logging.set_verbosity(verbosity)
    for row in record["trials"]:
        state = optuna.trial.TrialState[row["state"]]
        if len(objectives) > 1 and state is not optuna.trial.TrialState.COMPLETE:
            continue
        scores = {"accuracy": row["value"], "parameters": row["parameters"]}
        values = [scores[name] for name in objectives] if state is optuna.trial.TrialState.COMPLETE else None
        last_step = {100: row["value"]} if row["value"] is not None and values is None else {}
        study.add_trial(optuna.trial.create_trial(
            state=state, values=values, intermediate_values=last_step, params=row["params"],
            distributions={name: optuna.distributions.json_to_distribution(text)
                           for name, text in row["distributions"].items()},
            user_attrs={"number": row["number"], "parameters": row["parameters"], "network": row["network"]}))
    return study


def record_table(record: dict) -> str:
    """Where and how the study ran, how its trials ended, its best trial, and the presets trained for the same
    budget on the same validation split."""
    budget = TrialBudget(**record["budget"])
    counts = ", ".join(f"{n} {state}" for state, n in record["counts"].items())
    lines = [f"Measured on {record['machine']}, {record['date']}: {len(record['trials'])} trials of {budget} each "
             f"({counts}); {record['data']}", f"  {record['command']}"]
    best = record["best"]
    if best:
        recipe = ", ".join(f"{k}={best['recipe'][k]:.3g}" if isinstance(best["recipe"][k], float) else
                           f"{k}={best['recipe'][k]}" for k in ("optimizer", "lr", "weight_decay", "batch_size",
                                                               "label_smoothing", "erasing", "randaugment"))
        lines += [f"best: trial {best['number']}, validation accuracy {best['value']:.2%}, "
                  f"{best['parameters']:,} parameters", f"  {best['network']}", f"  {recipe}"]
    lines += ["", f"the same budget, the same validation split   {'parameters':>10} {'epochs':>7} {'val_acc':>8}"]
    if best:
        lines.append(f"{'best trial':<45}{best['parameters']:>10,} {'':>7} {best['value']:>8.2%}")
    for row in record["presets"]:
        lines.append(f"{'preset ' + row['label']:<45}{row['parameters']:>10,} {row['epochs']:>7.2f} "
                     f"{row['val_acc']:>8.2%}")
    return "\n".join(lines)


def workers_table(record: dict) -> str:
    """Trials per hour with one and with several workers on one machine (``benchmarks/search_workers.py``)."""
    lines = [f"Measured on {record['machine']}, {record['cores']} cores, {record['date']}: every trial `{record['preset']}` "
             f"for {plural(record['epochs_per_trial'], 'epoch')}, {record['trials_per_worker']} trials per worker",
             f"{'workers':>7} {'threads each':>12} {'trials':>6} {'wall s':>7} {'s/trial':>7} {'trials/hour':>11}"]
    for row in record["rows"]:
        lines.append(f"{row['workers']:>7} {row['threads_per_worker']!s:>12} {row['complete']:>6} {row['seconds']:>7.1f} "
                     f"{row['seconds_per_trial']:>7.1f} {row['trials_per_hour']:>11.1f}")
    return "\n".join(lines)
