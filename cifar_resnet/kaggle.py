"""Kaggle submission: predict the unlabeled test pickle, write submission.csv, validate it, and
assemble the course hand-in folder."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .budget import count_parameters
from .checkpoint import load_checkpoint, load_model
from .config import SUBMISSION_COLUMNS as COLUMNS, ModelConfig
from .data import CLASSES, load_kaggle_pickle
from .errors import CifarResnetError
from .evaluate import predict_logits
from .model import build_model
from .files import atomic_write, copy_atomic, sha256_file
from .train import CHECKPOINT_FILE, has_validation

WEIGHTS_FILE, CONFIG_FILE = "model_weights.pt", "model_config.json"  # the hand-in's network


def write_submission(ids, labels, path: str | os.PathLike, columns: tuple[str, str] = COLUMNS) -> Path:
    """Write one ``id,label`` row per id, in the given order, under a header (atomically)."""
    ids, labels = np.asarray(ids), np.asarray(labels)
    if ids.shape != labels.shape:
        raise CifarResnetError(f"{len(ids)} ids but {len(labels)} labels: one label per id is needed")
    path = Path(path)
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(zip(ids.tolist(), labels.tolist()))
    return path


def validate_submission(path: str | os.PathLike, ids, columns: tuple[str, str] = COLUMNS,
                        num_classes: int = len(CLASSES)) -> int:
    """Check a submission CSV against the test ids; return its row count.

    Checks the header, that every row has an integer id and an integer label in 0..classes-1,
    that ids are unique, and that exactly the test ids appear. Raises CifarResnetError naming the
    first bad row.
    """
    path = Path(path)
    if not path.is_file():
        raise CifarResnetError(f"submission {path} does not exist")
    expected = {str(int(i)) for i in np.asarray(ids).tolist()}
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(h.strip() for h in rows[0]) != tuple(columns):
        found = ",".join(rows[0]) if rows else "an empty file"
        raise CifarResnetError(f"submission {path}: header is {found!r}, expected {','.join(columns)!r}")
    seen = set()
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise CifarResnetError(f"submission {path}, line {line}: {len(row)} fields, expected 2 ({row})")
        raw_id, raw_label = (v.strip() for v in row)
        if not raw_id.lstrip("-").isdigit() or str(int(raw_id)) not in expected:
            raise CifarResnetError(f"submission {path}, line {line}: id {raw_id!r} is not an id of the test set")
        if raw_id in seen:
            raise CifarResnetError(f"submission {path}, line {line}: id {raw_id} appears twice")
        seen.add(str(int(raw_id)))
        if not raw_label.isdigit() or not 0 <= int(raw_label) < num_classes:
            raise CifarResnetError(f"submission {path}, line {line}: label {raw_label!r} is not an integer "
                                   f"0-{num_classes - 1}")
    missing = expected - seen
    if missing:
        raise CifarResnetError(f"submission {path}: {len(missing)} test ids have no row "
                               f"(for example {sorted(missing, key=int)[0]})")
    return len(rows) - 1


def predict_submission(checkpoint: str | os.PathLike, pickle_path: str | os.PathLike,
                       out: str | os.PathLike = "submission.csv", *, tta: bool | str = False,
                       columns: tuple[str, str] = COLUMNS, batch_size: int = 1024,
                       device: torch.device | str | None = None) -> Path:
    """Predict every image of the Kaggle pickle with a checkpoint; write and validate the CSV.

    The images are normalized with the statistics stored in the checkpoint, exactly as in training;
    ``tta`` is as for ``predict_logits`` (True or 'flip', or 'flip-shift').
    """
    model, ckpt = load_model(checkpoint, device)
    images, ids = load_kaggle_pickle(pickle_path)
    logits = predict_logits(model, images, ckpt.normalization, batch_size=batch_size, tta=tta)
    path = write_submission(ids, logits.argmax(1).numpy(), out, columns)
    validate_submission(path, ids, columns)
    return path


def submission_accuracy(submission: str | os.PathLike, labels_csv: str | os.PathLike) -> float:
    """Fraction of ids whose label matches a CSV of true labels in the same ``ID,Labels`` form."""
    def read(path):
        with open(path, newline="") as f:
            return {row[0]: row[1] for row in list(csv.reader(f))[1:]}
    predicted, truth = read(submission), read(labels_csv)
    if set(predicted) != set(truth):
        raise CifarResnetError(f"{submission} and {labels_csv} list different ids")
    return sum(predicted[i] == truth[i] for i in truth) / len(truth)


def make_handin(run_dir: str | os.PathLike, submission: str | os.PathLike, plots_dir: str | os.PathLike,
                out_dir: str | os.PathLike) -> Path:
    """Assemble the course hand-in in ``out_dir`` and return the path of its MANIFEST.md.

    It holds the weights (a plain state_dict), the model configuration with its normalization and
    the weights' SHA-256 (``load_handin_model`` checks it),
    the parameter-count proof (counted from the configuration and from the built model), the
    training history, every PNG of ``plots_dir`` and the validated submission.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    checkpoint = load_checkpoint(run_dir / CHECKPOINT_FILE)
    model = checkpoint.build_model("cpu")
    report = count_parameters(checkpoint.model_config)
    built = sum(p.numel() for p in model.parameters())
    if built != report.total:
        raise CifarResnetError(f"{run_dir}: the built model has {built:,} parameters, the count says {report.total:,}")
    with atomic_write(out_dir / WEIGHTS_FILE, "wb") as f:
        torch.save(model.state_dict(), f)
    with atomic_write(out_dir / CONFIG_FILE) as f:
        json.dump({"model_config": checkpoint.model_config.to_dict(),
                   "normalization": checkpoint.normalization.to_dict(),
                   "build": f"cifar_resnet.build_model(cifar_resnet.{checkpoint.model_config.code()})",
                   "weights_sha256": sha256_file(out_dir / WEIGHTS_FILE)}, f, indent=1)
    with atomic_write(out_dir / "parameter_count.txt") as f:
        f.write(f"{checkpoint.model_config.code()}\n\n{report.table()}\n\n"
                f"sum(p.numel() for p in model.parameters()) = {built:,}\n")
    copy_atomic(submission, out_dir / "submission.csv")
    copy_atomic(run_dir / "history.csv", out_dir / "history.csv")
    for png in sorted(Path(plots_dir).glob("*.png")):
        copy_atomic(png, out_dir / "plots" / png.name)
    files = sorted(p for p in out_dir.rglob("*") if p.is_file() and p.name != "MANIFEST.md")
    last = checkpoint.history[-1] if checkpoint.history else {}
    validation = (f"validation accuracy {100 * last['val_acc']:.2f}%" if last and has_validation(last)
                  else "no validation split")
    lines = ["# Hand-in", "",
             f"- model: `{checkpoint.model_config.code()}`",
             f"- parameters: {report.total:,} ({report.verdict})",
             f"- trained: {checkpoint.epoch} epochs, {checkpoint.elapsed / 60:.1f} minutes; {validation}",
             f"- normalization (mean, std): {checkpoint.normalization.mean}, {checkpoint.normalization.std}",
             "", "| file | bytes | sha256 |", "| --- | ---: | --- |"]
    lines += [f"| {p.relative_to(out_dir)} | {p.stat().st_size:,} | {sha256_file(p)[:16]} |" for p in files]
    with atomic_write(out_dir / "MANIFEST.md") as f:
        f.write("\n".join(lines) + "\n")
    return out_dir / "MANIFEST.md"



def load_handin_model(handin_dir: str | os.PathLike, device: torch.device | str | None = None) -> nn.Module:
    """The hand-in's network with its weights (eval mode), after checking that model_weights.pt is
    byte for byte the file ``make_handin`` wrote (its SHA-256 is in model_config.json)."""
    handin_dir = Path(handin_dir)
    config_path, weights_path = handin_dir / CONFIG_FILE, handin_dir / WEIGHTS_FILE
    try:
        meta = json.loads(config_path.read_text())
        model_config, expected = ModelConfig.from_dict(meta["model_config"]), meta["weights_sha256"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise CifarResnetError(f"{config_path} cannot be read ({type(e).__name__}: {e}): write the hand-in "
                               f"again with make_handin") from None
    if not weights_path.is_file():
        raise CifarResnetError(f"{weights_path} does not exist: write the hand-in again with make_handin")
    if sha256_file(weights_path) != expected:
        raise CifarResnetError(f"{weights_path} is damaged: its SHA-256 differs from the one recorded in "
                               f"{CONFIG_FILE} when it was written; write the hand-in again from the run's checkpoint")
    model = build_model(model_config, device)
    model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return model.eval()
