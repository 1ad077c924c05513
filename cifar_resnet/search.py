"""A search of the design space under the 5M budget, on Optuna: TPE proposes, successive halving prunes.

Each trial reads as its steps: draw a configuration from the space (``search_space``), count it on 'meta',
prune it untrained when it is over the budget, else train it with ``fit`` into its own run folder for the
per-trial budget, reporting validation accuracy (the training set's 10% split, never the test set) at each
epoch so the pruner can stop a poor one early. A trial whose worker vanished is retried, from its checkpoint,
by the next worker (``study_storage``). Every trial's folder keeps its checkpoint, so the best one goes straight
to notebooks 04 and 05 and the hand-in.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .budget import count_parameters
from .config import PARAMETER_BUDGET, ConfigurationError, ModelConfig, TrainConfig
from .data import CifarData
from .errors import CifarResnetError
from .search_space import Sampler, base_recipe, check_budget, is_range, load_space
from .study_storage import (HEARTBEAT_SECONDS, JOURNAL_FILE, StorageError, StudyStorage, open_storage, retry_callback,
                            storage_url)
from .train import TrainingInterrupted, fit

OBJECTIVES = {"accuracy": "maximize", "parameters": "minimize", "seconds": "minimize"}
PRUNER_RUNGS = dict(min_resource=25, reduction_factor=2)  # percent of the trial's budget: rungs at 25, 50, 100
DEFAULT_OUT = "searches"  # OUT/STUDY holds the embedded study file and a folder per trial


class TrialFailed(CifarResnetError):
    """One trial could not train (it diverged, or ran out of memory); the search goes on with the next."""


class SearchInterrupted(CifarResnetError, KeyboardInterrupt):
    """The search was stopped (Ctrl-C); the message says what was kept."""


@dataclass(frozen=True)
class TrialBudget:
    """How long each trial trains: ``epochs`` or ``minutes``."""

    epochs: int | None = None
    minutes: float | None = None

    def __post_init__(self):
        if (self.epochs is None) == (self.minutes is None):
            raise ConfigurationError("give a per-trial budget: epochs or minutes (one of the two)")
        if (self.epochs if self.epochs is not None else self.minutes) <= 0:
            raise ConfigurationError(f"the per-trial budget must be > 0; got {self}")

    def apply(self, recipe: TrainConfig) -> TrainConfig:
        return dataclasses.replace(recipe, epochs=self.epochs or recipe.epochs, minutes=self.minutes)

    def percent_done(self, row: dict) -> int:
        """How far into the budget a history row is, in percent: the pruner's step."""
        share = row["epoch"] / self.epochs if self.epochs else row["elapsed"] / (60 * self.minutes)
        return min(100, round(100 * share))

    def __str__(self) -> str:
        return plural(self.epochs, "epoch") if self.epochs else f"{self.minutes:g} minute{'' if self.minutes == 1 else 's'}"


def study_folder(out: str | Path, study: str) -> Path:
    return Path(out) / study


def trial_folder_name(number: int) -> str:
    return f"trial-{number:04d}"


def suggest_with(trial):
    """``Sampler``'s suggest callable on an Optuna trial: ranges as suggest_int/suggest_float, lists as choices."""
    def suggest(name: str, value):
        if is_range(value):
            low, high, log = value["low"], value["high"], bool(value.get("log"))
            if isinstance(low, int) and isinstance(high, int):
                return trial.suggest_int(name, low, high, log=log)
            return trial.suggest_float(name, low, high, log=log)
        return trial.suggest_categorical(name, value)
    return suggest


def worker_id() -> str:
    """This process, as the trials it runs record it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Objective:
    """What one trial does, with everything it needs passed in."""

    space: dict
    budget: TrialBudget
    objectives: tuple[str, ...]
    data: CifarData
    folder: Path
    device: torch.device | str | None
    seed: int

    def __call__(self, trial) -> float | tuple[float, ...]:
        import optuna

        model, recipe = self.draw(trial)
        parameters = count_parameters(model).total
        retry_of_folder = trial.user_attrs.get("run_folder")  # a retry inherits its failed trial's attributes
        if not retry_of_folder:  # ... and its constraint, which Optuna sets only once
            trial.set_constraint("parameters over the budget", float(parameters - PARAMETER_BUDGET))  # TPE: the edge
        run_folder = retry_of_folder or trial_folder_name(trial.number)
        for key, value in {"parameters": parameters, "config": {"model": model.to_dict(), "train": recipe.to_dict()},
                           "worker": worker_id(), "run_folder": run_folder}.items():
            trial.set_user_attr(key, value)
        if parameters > PARAMETER_BUDGET:
            say(f"trial {trial.number}: pruned untrained, {parameters:,} parameters are over the "
                f"{PARAMETER_BUDGET:,} budget: {model.code()}")
            raise optuna.TrialPruned(f"{parameters:,} parameters, over the budget")
        run_dir = self.folder / run_folder
        say(f"trial {trial.number} started in {run_dir}: {parameters:,} parameters, {model.code()}"
            + (" (retrying, resumed from its checkpoint)" if retry_of_folder else ""))
        try:
            result = fit(model, recipe, self.data, run_dir, device=self.device, resume=bool(retry_of_folder),
                         progress=False, on_epoch=self.reporter(trial))
        except TrainingInterrupted:
            raise
        except CifarResnetError as e:
            raise TrialFailed(f"trial {trial.number} could not train: {e}") from None
        last = result.history[-1]
        scores = {"accuracy": last["val_acc"], "parameters": float(parameters), "seconds": last["elapsed"]}
        values = tuple(scores[name] for name in self.objectives)
        return values[0] if len(values) == 1 else values

    def draw(self, trial) -> tuple[ModelConfig, TrainConfig]:
        """The trial's network and recipe; a configuration that cannot be built is pruned with its reason."""
        import optuna

        sampler = Sampler(self.space, suggest_with(trial))
        try:
            model = sampler.model()
            recipe = self.budget.apply(sampler.recipe(base_recipe(self.space)))
        except ConfigurationError as e:
            trial.set_user_attr("invalid", str(e))
            trial.set_constraint("parameters over the budget", 1.0)
            say(f"trial {trial.number}: pruned untrained, the configuration cannot be built: {e}")
            raise optuna.TrialPruned(str(e)) from None
        return model, dataclasses.replace(recipe, seed=self.seed)

    def reporter(self, trial):
        """fit's on_epoch: report validation accuracy at the percent of the budget done, and prune when told
        (single-objective studies only: Optuna prunes on one value)."""
        import optuna

        reported = set()

        def on_epoch(history: list[dict]) -> None:
            if len(self.objectives) > 1:
                return
            for row in history:  # a resumed run's earlier epochs too, once
                step = self.budget.percent_done(row)
                if step not in reported:
                    trial.report(row["val_acc"], step)
                    reported.add(step)
            if trial.should_prune():
                trial.set_user_attr("pruned_at", f"{step}% of {self.budget}")
                raise optuna.TrialPruned(f"val_acc {history[-1]['val_acc']:.4f} at {step}% of the budget")
        return on_epoch


def finished_line(study, trial) -> None:
    """Optuna callback: one line per finished trial."""
    value = f", val_acc {trial.values[0]:.4f}" if trial.values else ""
    where = trial.user_attrs.get("pruned_at")
    say(f"trial {trial.number} {trial.state.name}{value}" + (f" (pruned at {where})" if where else ""))


def study_identity(space: dict, objectives: tuple[str, ...], budget: TrialBudget) -> dict:
    """What every worker on one study must agree on, as the study's user attributes."""
    return {"space": json.dumps(space, sort_keys=True), "objectives": list(objectives),
            "budget": dataclasses.asdict(budget)}


def open_study(name: str, storage: StudyStorage, identity: dict):
    """Create the study, or join it when it exists with the same space, objectives and budget."""
    import optuna

    directions = [OBJECTIVES[o] for o in identity["objectives"]]
    study = optuna.create_study(
        study_name=name, storage=storage.optuna_storage, load_if_exists=True, directions=directions,
        sampler=optuna.samplers.TPESampler(),  # unseeded: workers on one study propose apart
        pruner=optuna.pruners.SuccessiveHalvingPruner(**PRUNER_RUNGS))
    if not study.user_attrs:
        for key, value in identity.items():
            study.set_user_attr(key, value)
    recorded, deadline = study.user_attrs, time.monotonic() + 10
    while not identity.keys() <= recorded.keys() and time.monotonic() < deadline:  # its creator is still writing
        time.sleep(0.1)
        recorded = study.user_attrs
    for key, value in identity.items():
        if recorded.get(key) != value:
            raise StorageError(f"study {name!r} in {storage.shown_as} was made with another {key} "
                               f"({_short(recorded.get(key))} there, {_short(value)} here): join it with the same "
                               f"{key}, or start a new study with another --study name")
    return study


def _short(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Search:
    """An open study and what its trials need, checked before any data is read: the space, the budget, the
    objectives, the folder for run folders, the storage."""

    study: object  # optuna.Study
    storage: StudyStorage
    space: dict
    budget: TrialBudget
    objectives: tuple[str, ...]
    folder: Path

    def run(self, trials: int, data: CifarData, device: torch.device | str | None = None, seed: int = 0):
        """Run ``trials`` trials in this process; Ctrl-C keeps every finished trial."""
        so_far = plural(len(self.study.trials), "trial")
        say(f"study {self.study.study_name!r} in {self.storage.shown_as}: {so_far} so far; {trials} more here, "
            f"{self.budget} each")
        objective = Objective(self.space, self.budget, self.objectives, data, self.folder, device, seed)
        try:
            self.study.optimize(objective, n_trials=trials, catch=(TrialFailed,), callbacks=[finished_line],
                                gc_after_trial=True)
        except KeyboardInterrupt:
            raise SearchInterrupted(interrupted_message(self.study, self.storage)) from None
        return self.study


def open_search(study: str, budget: TrialBudget, *, space: str | Path | dict | None = None,
                objectives: tuple[str, ...] = ("accuracy",), out: str | Path = DEFAULT_OUT, storage: str | None = None,
                heartbeat_seconds: int = HEARTBEAT_SECONDS) -> Search:
    """Create study ``study``, or join it; ``Search.run`` then runs trials. Several processes or machines may
    join one study through one ``storage`` (a database URL; None: $CIFAR_RESNET_STORAGE, a Colab or Kaggle secret
    of that name, else the embedded file OUT/STUDY/study.journal)."""
    import optuna

    objectives = check_objectives(objectives)
    space = load_space(space)
    check_budget(space)  # before any trial: a space with nothing under the budget is refused here
    folder = study_folder(out, study)
    opened = open_storage(storage_url(storage), folder, heartbeat_seconds)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line per trial, from here, instead
    found = open_study(study, opened, study_identity(space, objectives, budget))
    return Search(found, opened, space, budget, objectives, folder)


def check_objectives(objectives) -> tuple[str, ...]:
    objectives = tuple(objectives)
    allowed = [("accuracy",), ("accuracy", "parameters"), ("accuracy", "seconds")]
    if objectives not in allowed:
        raise ConfigurationError(f"objectives {' '.join(objectives)}: use accuracy, accuracy parameters, or "
                                 f"accuracy seconds")
    return objectives


def interrupted_message(study, storage: StudyStorage) -> str:
    """What a stopped search kept; the stopped trial is queued again, to resume from its checkpoint."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    retried = {number for t in trials for number in t.system_attrs.get("retry_history", ())}
    stopped = [t for t in trials if t.state == optuna.trial.TrialState.FAIL and t.number not in retried
               and t.user_attrs.get("worker") == worker_id() and "run_folder" in t.user_attrs]
    for trial in stopped[-1:]:  # the one this process was running
        retry_callback()(study, trial)
    finished = sum(t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED) for t in trials)
    return (f"search stopped: {plural(finished, 'finished trial')} kept in {storage.shown_as}"
            + (f"; trial {stopped[-1].number} stopped and is queued to resume from its checkpoint in "
               f"{stopped[-1].user_attrs['run_folder']}" if stopped else ""))


def load_study(study: str, out: str | Path = DEFAULT_OUT, storage: str | None = None):
    """An existing study, read-only use; StorageError when there is none of that name."""
    import optuna

    url = storage_url(storage)
    folder = study_folder(out, study)
    if url is None and not (folder / JOURNAL_FILE).is_file():
        raise StorageError(f"no study {study!r}: {folder / JOURNAL_FILE} does not exist (run `search --study "
                           f"{study}` first, or pass the --out or --storage it used)")
    opened = open_storage(url, folder)
    names = optuna.get_all_study_names(opened.optuna_storage)
    if study not in names:
        raise StorageError(f"no study {study!r} in {opened.shown_as}; it holds {names or 'no studies'}")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=study, storage=opened.optuna_storage)


def leaderboard(study) -> dict:
    """Every trial once, in order, and the best: ``{"trials": [...], "best": {...}}``."""
    rows = [trial_row(t) for t in study.get_trials(deepcopy=False)]
    complete = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    best = max(complete, key=lambda r: r["value"], default=None)
    board = {"study": study.study_name, "objectives": study.user_attrs.get("objectives"),
             "budget": study.user_attrs.get("budget"), "trials": rows, "best": best}
    if len(study.directions) > 1:
        board["pareto"] = sorted(t.number for t in study.best_trials)
    return board


def trial_row(trial) -> dict:
    history = trial.system_attrs.get("retry_history")
    return {"number": trial.number, "state": trial.state.name,
            "value": trial.values[0] if trial.values else None,
            "values": list(trial.values) if trial.values else None,
            "parameters": trial.user_attrs.get("parameters"), "config": trial.user_attrs.get("config"),
            "retry_of": history[-1] if history else None, "run_folder": trial.user_attrs.get("run_folder"),
            "pruned_at": trial.user_attrs.get("pruned_at"), "invalid": trial.user_attrs.get("invalid")}


def leaderboard_table(board: dict) -> str:
    """The leaderboard as text: finished trials by validation accuracy, then the rest."""
    def order(row):
        return (row["value"] is None, -(row["value"] or 0), row["number"])
    budget = TrialBudget(**board["budget"]) if board["budget"] else "an unknown budget"
    lines = [(f"study {board['study']}: {len(board['trials'])} trials, {budget} each, "
              f"objectives {' '.join(board['objectives'] or [])}"),
             f"{'trial':>5}  {'state':<8} {'val_acc':>7} {'parameters':>11}  {'retry of':>8}  network"]
    for row in sorted(board["trials"], key=order):
        model = ModelConfig.from_dict(row["config"]["model"]).code() if row["config"] else row["invalid"] or ""
        value = f"{row['value']:.4f}" if row["value"] is not None else "-"
        parameters = f"{row['parameters']:,}" if row["parameters"] is not None else "-"
        retry = str(row["retry_of"]) if row["retry_of"] is not None else ""
        lines.append(f"{row['number']:>5}  {row['state']:<8} {value:>7} {parameters:>11}  {retry:>8}  {model}")
    if board["best"]:
        lines.append(f"best: trial {board['best']['number']}, val_acc {board['best']['value']:.4f}, "
                     f"run folder {board['best']['run_folder']}")
    return "\n".join(lines)


def best_configuration(study) -> tuple[dict, ModelConfig, TrainConfig]:
    """The best finished trial's row, network and recipe (``train --from-study``)."""
    best = leaderboard(study)["best"]
    if best is None:
        raise CifarResnetError(f"study {study.study_name!r} has no finished trial yet: let a search finish one first")
    config = best["config"]
    return best, ModelConfig.from_dict(config["model"]), TrainConfig.from_dict(config["train"])
