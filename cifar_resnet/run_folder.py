"""A run folder's files: checkpoint.pt, history.json and history.csv, run.json, and how to read them back."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .config import TrainConfig, techniques_used
from .data import CifarData, Normalization
from .device import Compute, device_description
from .errors import CifarResnetError
from .files import atomic_write
from .network import Network

CHECKPOINT_FILE = "checkpoint.pt"
RUN_FILE = "run.json"  # how the run was configured and where it computed, rewritten at each start or resume
HISTORY_FIELDS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                  "images_per_s", "seconds", "elapsed")


def has_validation(row: dict) -> bool:
    """Whether a history row holds a validation score (runs without a split store None; older ones NaN)."""
    return row.get("val_acc") is not None and not math.isnan(row["val_acc"])


def start_run_folder(run_dir: Path, description: dict) -> None:
    """Create the run folder, clear leftovers of a killed checkpoint write, and write ``description`` to run.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for leftover in run_dir.glob(f".{CHECKPOINT_FILE}.*.tmp"):
        leftover.unlink()
    with atomic_write(run_dir / RUN_FILE) as f:
        json.dump(description, f, indent=1)


def write_history(history: list[dict], run_dir: Path) -> None:
    """history.json and history.csv in ``run_dir``, each written atomically."""
    with atomic_write(run_dir / "history.json") as f:
        json.dump(history, f, indent=1)
    with atomic_write(run_dir / "history.csv", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows(history)


def read_history(run_dir: str | Path) -> list[dict]:
    """The per-epoch history a run wrote (history.json)."""
    path = Path(run_dir) / "history.json"
    if not path.is_file():
        raise CifarResnetError(f"{path} does not exist: train a run into {run_dir} first")
    return json.loads(path.read_text())


def run_description(network: Network, config: TrainConfig, normalization: Normalization, data: CifarData,
                    compute: Compute) -> dict:
    """run.json's content: what the run trains (network, recipe and which of the course's techniques it uses,
    normalization, data) and how it computes."""
    dtype = compute.dtype
    return {"model_config": network.to_dict(), "train_config": config.to_dict(),
            "course_techniques": techniques_used(config),
            "normalization": normalization.to_dict(), "data": repr(data),
            "device": device_description(compute.device), "precision": compute.precision,
            "autocast_dtype": str(dtype).removeprefix("torch.") if dtype else None}
