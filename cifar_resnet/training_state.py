"""Where a training run stands and what it decided: the plan made before the first step, the state a
checkpoint keeps (epochs, steps, history, the unfinished epoch's running sums), and what resuming and
stopping that state involve."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import Checkpoint, check_architecture, load_checkpoint
from .config import EXECUTION_FIELDS, TrainConfig
from .data import CifarData, train_val_split
from .device import Compute
from .errors import CifarResnetError
from .network import Network
from .progress import Clock


class TrainingDivergedError(CifarResnetError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class RunPlan:
    """What a run decides before its first step: the split, the batch size, and how it computes."""

    train_indices: Tensor  # of data.train_images
    val_indices: Tensor
    batch_size: int  # the recipe's, capped at the number of training images
    compute: Compute

    @classmethod
    def make(cls, config: TrainConfig, data: CifarData, device: torch.device | str | None) -> "RunPlan":
        compute = Compute.choose(device, config.amp, config.channels_last)
        train_indices, val_indices = train_val_split(data.train_labels, config.val_size, config.seed)
        return cls(train_indices, val_indices, min(config.batch_size, len(train_indices)), compute)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in an epoch (the last partial batch is dropped)."""
        return len(self.train_indices) // self.batch_size


class EpochSums:
    """The unfinished epoch's running loss and hits (summed on the device, so that a step never waits for it),
    its images and seconds, and the learning rate of its last step."""

    def __init__(self, device: torch.device, loss_sum: float = 0.0, correct: int = 0, seen: int = 0,
                 seconds: float = 0.0, lr: float = 0.0):
        self.loss = torch.tensor(loss_sum, device=device)
        self.correct = torch.tensor(correct, device=device)
        self.seen, self.lr = seen, lr
        self.seconds_before = seconds  # trained in this epoch before a resume
        self.started = time.perf_counter()

    def begin(self) -> None:
        """Start (or continue) timing the epoch's training."""
        self.started = time.perf_counter()

    def add(self, loss: Tensor, logits: Tensor, labels: Tensor, lr: float) -> None:
        self.loss += loss.detach() * len(labels)
        self.correct += (logits.detach().argmax(1) == labels).sum()
        self.seen += len(labels)
        self.lr = lr

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def mean_loss(self) -> float:
        return self.loss.item() / self.seen  # waits for the device

    def accuracy(self) -> float:
        return int(self.correct.item()) / self.seen

    def to_dict(self) -> dict:
        """The sums as plain numbers, for a checkpoint (waits for the device)."""
        return {"loss_sum": self.loss.item(), "correct": int(self.correct.item()), "seen": self.seen,
                "seconds": self.seconds(), "lr": self.lr}


@dataclass
class TrainingState:
    """Where a run stands: what a checkpoint stores besides the weights and the optimizer.

    ``batch``, ``rng_state`` and ``sums`` describe an unfinished epoch: the batches done, the augmentation's
    random state to continue from, and the running sums. ``class_shares`` is set once training ends.
    """

    sums: EpochSums
    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    elapsed: float = 0.0  # seconds of training so far, across resumes
    history: list[dict] = field(default_factory=list)
    batch: int = 0
    rng_state: Tensor | None = None
    class_shares: list[float] | None = None

    @classmethod
    def resumed(cls, checkpoint: Checkpoint | None, device: torch.device) -> "TrainingState":
        """Where ``checkpoint`` left its run, with running sums on ``device``; a new run's start without one."""
        if checkpoint is None:
            return cls(EpochSums(device))
        within = {k: v for k, v in (checkpoint.within_epoch or {}).items() if k != "lookahead"}
        batch, rng_state = within.pop("batch", 0), within.pop("rng_state", None)
        return cls(EpochSums(device, **within), checkpoint.epoch, checkpoint.step, checkpoint.elapsed,
                   checkpoint.history, batch, rng_state, checkpoint.class_shares)

    def within_epoch(self, lookahead: list[Tensor] | None = None) -> dict | None:
        """The unfinished epoch's part of a checkpoint, with lookahead's slow weights if given (None at an
        epoch's end)."""
        if self.batch == 0:
            return None
        within = {"batch": self.batch, "rng_state": self.rng_state, **self.sums.to_dict()}
        return within if lookahead is None else {**within, "lookahead": lookahead}

    def finish_epoch(self, val_loss: float | None, val_acc: float | None, train_seconds: float,
                     elapsed: float) -> dict:
        """Add the epoch's history row (returned), and start the next epoch's sums."""
        sums = self.sums
        row = {"epoch": self.epoch + 1, "step": self.step, "lr": sums.lr, "train_loss": sums.mean_loss(),
               "train_acc": sums.accuracy(), "val_loss": val_loss, "val_acc": val_acc,
               "images_per_s": sums.seen / train_seconds, "seconds": sums.seconds(), "elapsed": elapsed}
        self.epoch, self.elapsed = self.epoch + 1, elapsed
        self.history.append(row)
        self.batch, self.rng_state, self.sums = 0, None, EpochSums(sums.loss.device)
        return row


def resumable_checkpoint(path: Path, network: Network, config: TrainConfig) -> tuple[Checkpoint, str]:
    """The checkpoint at ``path``, if ``config`` may continue it, and a note of the execution settings that changed
    ('' if none). Another architecture or another recipe is refused, with the differences."""
    previous = load_checkpoint(path)
    check_architecture(previous, network, path)
    if previous.train_config is None:
        raise CifarResnetError(f"cannot resume {path}: it records no training settings; train into a new folder")
    changes = previous.train_config.changes(config)
    recipe = {name: values for name, values in changes.items() if name not in EXECUTION_FIELDS}
    if recipe:
        diff = "; ".join(f"{name}: {old} vs {new}" for name, (old, new) in recipe.items())
        raise CifarResnetError(f"cannot resume {path}: it was trained with another recipe (checkpoint vs now: "
                               f"{diff}); resume with the same recipe or train into a new folder")
    if not changes:
        return previous, ""
    return previous, "new execution settings (checkpoint -> now): " + "; ".join(
        f"{name} {old} -> {new}" for name, (old, new) in changes.items())


def check_finite(sums: EpochSums, step: int, checkpoint_path: Path | None) -> None:
    """Raise TrainingDivergedError once the epoch's loss is NaN or infinite (waits for the device)."""
    if not torch.isfinite(sums.loss):
        kept = f"; the last good checkpoint {checkpoint_path} is kept" if checkpoint_path else ""
        raise TrainingDivergedError(f"the training loss became {sums.loss.item()} by step {step} (learning rate "
                                    f"{sums.lr:.4g}){kept}: lower the learning rate or turn off mixed precision "
                                    f"(amp='off')")


def stopped_message(state: TrainingState, checkpoint_path: Path | None, clock: Clock, saved_now: bool = False) -> str:
    """What an interrupted run kept, and how to continue it."""
    where = f"interrupted in epoch {state.epoch + 1} after step {state.step}"
    if checkpoint_path is None:
        return f"{where}; nothing was saved (no run folder): pass run_dir to keep a checkpoint"
    if not checkpoint_path.is_file():
        return f"{where}; no checkpoint was written yet in {checkpoint_path.parent}: train again to start over"
    kept = load_checkpoint(checkpoint_path)
    position = f"step {kept.step}" + ("" if kept.within_epoch else f", the end of epoch {kept.epoch}")
    saved = "saved now" if saved_now else f"saved {clock.since_saved():.0f} s before"
    return (f"{where}; {checkpoint_path} keeps the run at {position} ({kept.elapsed / 60:.1f} minutes of "
            f"training, {saved}): run again with resume=True (or `train --resume`) to continue")


def resume_point(path: Path | None, network: Network, config: TrainConfig) -> tuple[Checkpoint | None, str]:
    """The checkpoint at ``path`` to resume from and the note of ``resumable_checkpoint``; (None, '') where there is
    none (``path`` None or no such file: the run starts afresh)."""
    if path is None or not path.is_file():
        return None, ""
    return resumable_checkpoint(path, network, config)


def restore(previous: Checkpoint | None, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scaler: torch.amp.GradScaler) -> None:
    """Load a checkpoint's weights, optimizer state and gradient scale into a run's parts (nothing without one)."""
    if previous is None:
        return
    model.load_state_dict(previous.state_dict)
    optimizer.load_state_dict(previous.optimizer_state)
    if previous.scaler_state:  # empty where the run did not scale its gradients
        scaler.load_state_dict(previous.scaler_state)


def unfinished_slow_weights(previous: Checkpoint | None, device: torch.device) -> list[Tensor] | None:
    """Lookahead's slow weights of an epoch a checkpoint left unfinished, on ``device`` (else None: at an
    epoch's end the model holds them)."""
    slow = (previous.within_epoch or {}).get("lookahead") if previous else None
    return None if slow is None else [t.to(device) for t in slow]
