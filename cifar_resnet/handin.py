"""The course hand-in: one folder a student commits and a grader accepts.

``make_handin`` writes the weights (a plain state_dict) with the network's configuration or builder
and the weights' SHA-256, the parameter proof (per part and per layer, against the course's rule of
at most 5,000,000 parameters), the run's own figures and history, the validated submission,
``results.json`` with the run's numbers, a draft report in the course's sections (``report.md``)
and the same draft as LaTeX for the AAAI 2024 author kit (``report.tex``), and a MANIFEST.md of
every file with its checksum. ``load_handin_model`` loads the network back, as a grader would.
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .budget import ParameterReport, count_parameters
from .checkpoint import Checkpoint, load_checkpoint
from .config import TTA_MODES, ModelConfig, techniques_used
from .data import CifarData
from .device import Compute
from .errors import CifarResnetError
from .evaluate import evaluate
from .files import atomic_write, copy_atomic, sha256_file
from .kaggle import prediction_record, submission_accuracy
from .network import build_network, network_from_dict
from .report import accuracy_line, write_reports
from .robustness import ROBUSTNESS_FILE, load_results, summarize
from .run_folder import CHECKPOINT_FILE, has_validation

WEIGHTS_FILE, CONFIG_FILE = "model_weights.pt", "model_config.json"  # the hand-in's network
FIGURES = ("training_curves.png", "lr_schedule.png", "confusion_matrix.png", "per_class_accuracy.png",
           "confident_mistakes.png", "reliability.png", "robustness.png")  # what notebook 04 draws of the student's run


def make_handin(run_dir: str | os.PathLike, submission: str | os.PathLike, plots_dir: str | os.PathLike,
                out_dir: str | os.PathLike, *, data: CifarData | None = None,
                labels_csv: str | os.PathLike | None = None, network: nn.Module | None = None) -> Path:
    """Assemble the hand-in of the run in ``run_dir`` in ``out_dir``; return its MANIFEST.md.

    ``plots_dir``: where notebook 04 saved the run's figures (only FIGURES are taken: never a
    benchmark's). ``data``: with labelled test images, the test accuracy with and without TTA goes
    into the results and the report. ``labels_csv``: true labels of the submission's ids, where a
    local copy has them (the submission's accuracy is then stated too). ``network``: an instance of the
    run's own network, for one whose class cannot be imported again (defined in another session).
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    model = checkpoint.build_model("cpu", network)
    report = count_parameters(model)
    _write_network(checkpoint, model, out_dir)
    with atomic_write(out_dir / "parameter_count.txt") as f:
        f.write(f"{checkpoint.model_config.code()}\n\n{report.table()}\n\n{report.layer_table()}\n\n"
                f"sum(p.numel() for p in model.parameters()) = {sum(p.numel() for p in model.parameters()):,}\n")
    copy_atomic(submission, out_dir / "submission.csv")
    copy_atomic(run_dir / "history.csv", out_dir / "history.csv")
    for name in FIGURES:
        if (Path(plots_dir) / name).is_file():
            copy_atomic(Path(plots_dir) / name, out_dir / "plots" / name)
    results = handin_results(checkpoint, model, report, run_dir, data, submission, labels_csv, Path(plots_dir))
    with atomic_write(out_dir / "results.json") as f:
        json.dump(results, f, indent=1)
    write_reports(results, report, checkpoint, out_dir)
    return _write_manifest(results, report, out_dir)


def handin_results(checkpoint: Checkpoint, model: nn.Module, report: ParameterReport, run_dir: Path,
                   data: CifarData | None, submission: str | os.PathLike,
                   labels_csv: str | os.PathLike | None, plots_dir: Path | None = None) -> dict:
    """The run's numbers: parameters, accuracies that can be measured here, robustness to corruptions (as notebook
    04 measured it into ``plots_dir``), what the prediction did, time, device, versions."""
    last = checkpoint.history[-1] if checkpoint.history else {}
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() else {}
    test = None
    if data is not None and len(data.test_labels):
        compute = Compute.choose()
        on_device = model.to(compute.device)
        test = {mode: evaluate(on_device, data.test_images, data.test_labels, checkpoint.normalization,
                               tta=mode, compute=compute).accuracy for mode in TTA_MODES}
        model.to("cpu")
    return {
        "network": checkpoint.model_config.code(), "parameters": report.total, "budget": report.budget,
        "fits_budget": report.fits_budget, "forward_mflops": report.flops / 1e6,
        "epochs": checkpoint.epoch, "training_minutes": checkpoint.elapsed / 60,
        "length_asked": _length_asked(checkpoint),
        "course_techniques": techniques_used(checkpoint.train_config) if checkpoint.train_config else None,
        "validation_accuracy": last["val_acc"] if last and has_validation(last) else None,
        "test_accuracy": test, "test_images": len(data.test_labels) if test else None,
        "test_data": (Path(data.source).name + (" (synthetic)" if data.synthetic else "")) if test else None,
        "submission_accuracy": submission_accuracy(submission, labels_csv) if labels_csv else None,
        "prediction": prediction_record(submission),
        "corruptions": _corruption_summary(plots_dir),
        "device": run.get("device"), "precision": run.get("precision"),
        "train_config": checkpoint.train_config.to_dict() if checkpoint.train_config else None,
        "versions": {"cifar_resnet": __version__, "torch": torch.__version__,
                     "torchvision": _module_version("torchvision"), "python": platform.python_version()}}


def _corruption_summary(plots_dir: Path | None) -> dict | None:
    """The mean corruption accuracy and the worst corruption of the run, from notebook 04's robustness.json."""
    path = plots_dir / ROBUSTNESS_FILE if plots_dir else None
    results = load_results(path) if path and path.is_file() else None
    return summarize(results) if results else None


def _length_asked(checkpoint: Checkpoint) -> str | None:
    """The run's length as its recipe set it: a time budget or a number of epochs."""
    config = checkpoint.train_config
    if config is None:
        return None
    return f"{config.minutes:g} minutes" if config.minutes else f"{config.epochs} epochs"


def load_handin_model(handin_dir: str | os.PathLike, device: torch.device | str | None = None) -> nn.Module:
    """The hand-in's network with its weights (eval mode), after checking that model_weights.pt is
    byte for byte the file ``make_handin`` wrote (its SHA-256 is in model_config.json)."""
    handin_dir = Path(handin_dir)
    config_path, weights_path = handin_dir / CONFIG_FILE, handin_dir / WEIGHTS_FILE
    try:
        meta = json.loads(config_path.read_text())
        network, expected = network_from_dict(meta["model_config"]), meta["weights_sha256"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise CifarResnetError(f"{config_path} cannot be read ({type(e).__name__}: {e}): write the hand-in "
                               f"again with make_handin") from None
    if not weights_path.is_file():
        raise CifarResnetError(f"{weights_path} does not exist: write the hand-in again with make_handin")
    if sha256_file(weights_path) != expected:
        raise CifarResnetError(f"{weights_path} is damaged: its SHA-256 differs from the one recorded in "
                               f"{CONFIG_FILE} when it was written; write the hand-in again from the run's checkpoint")
    model = build_network(network, device)
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model.eval()


def _write_network(checkpoint: Checkpoint, model: nn.Module, out_dir: Path) -> None:
    """model_weights.pt (a plain state_dict) and model_config.json (how to rebuild it, and its SHA-256)."""
    with atomic_write(out_dir / WEIGHTS_FILE, "wb") as f:
        torch.save(model.state_dict(), f)
    network = checkpoint.model_config
    build = (f"cifar_resnet.build_model(cifar_resnet.{network.code()})" if isinstance(network, ModelConfig)
             else f"{network.code()}  # the student's builder: import it from its module")
    with atomic_write(out_dir / CONFIG_FILE) as f:
        json.dump({"model_config": network.to_dict(), "normalization": checkpoint.normalization.to_dict(),
                   "build": build, "weights_sha256": sha256_file(out_dir / WEIGHTS_FILE)}, f, indent=1)


def _write_manifest(results: dict, report: ParameterReport, out_dir: Path) -> Path:
    """MANIFEST.md: the run in a few lines, then every file with its size and SHA-256."""
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != "MANIFEST.md")
    lines = ["# Hand-in", "", f"- network: `{results['network']}`",
             f"- parameters: {report.total:,} ({report.verdict})",
             f"- trained: {results['epochs']} epochs, {results['training_minutes']:.1f} minutes"
             + (f" on {results['device']}" if results["device"] else ""),
             f"- {accuracy_line(results)}", "", "| file | bytes | sha256 |", "| --- | ---: | --- |"]
    lines += [f"| {p.relative_to(out_dir).as_posix()} | {p.stat().st_size:,} | {sha256_file(p)[:16]} |" for p in files]
    with atomic_write(out_dir / "MANIFEST.md") as f:
        f.write("\n".join(lines) + "\n")
    return out_dir / "MANIFEST.md"


def _module_version(name: str) -> str | None:
    try:
        return __import__(name).__version__
    except ImportError:
        return None
