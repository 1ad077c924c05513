"""``fit``: the one training loop for the notebooks, the command line and the benchmarks.

``fit`` reads as its steps: set up the run (``Trainer``), resume it if asked, then per epoch
train (``fit_epoch``: augmented batches, autocast steps, lookahead), validate and save
(``end_epoch``). The training images stay on the device as uint8; each step normalizes a batch,
runs forward and backward under autocast and takes a Nesterov SGD (or Muon) step whose learning rate the
schedule sets per step. Every epoch ends with a history row and an atomic checkpoint; within an
epoch a checkpoint is also written every CHECKPOINT_SECONDS, and Ctrl-C (Kernel > Interrupt in
Jupyter) stops after the running step with a checkpoint. ``resume=True`` continues any of them
exactly where it stopped.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .augment import Augmentation, TrainingBatches
from .checkpoint import Checkpoint, check_architecture, load_checkpoint, save_checkpoint
from .config import LINEAR_END_SHARE, ConfigurationError, ModelConfig, TrainConfig
from .data import CifarData, Normalization, train_val_split
from .device import Compute, device_description, precision_name, select_device
from .errors import CifarResnetError
from .evaluate import class_shares, predict_logits
from .files import atomic_write
from .model import build_model, whiten_stem
from .muon import Muon
from .network import Builder, Network

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_SECONDS = 120.0  # a checkpoint at least this often within an epoch
SHARES_IMAGES = 2000  # training images whose predicted classes show what a test set like them gets
LOOKAHEAD_EVERY, LOOKAHEAD_PEAK = 5, 0.95 ** 5  # steps between lookahead updates, their final decay
LINEAR_START, LINEAR_END = 0.2, LINEAR_END_SHARE  # the 'linear' schedule's first and last rate, as fractions of the peak
FINITE_CHECK_EVERY = 25  # steps between checks that the loss is still finite (each check waits for the device)
HISTORY_FIELDS = ("epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                  "images_per_s", "seconds", "elapsed")


class TrainingDivergedError(CifarResnetError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(CifarResnetError, KeyboardInterrupt):
    """Training was stopped (Ctrl-C, Kernel > Interrupt); the message says what was kept."""


@dataclass
class TrainResult:
    model: nn.Module  # the trained model, in eval mode
    history: list[dict]
    normalization: Normalization
    run_dir: Path | None
    device: torch.device

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_FILE if self.run_dir else None

    def summary(self) -> str:
        """One line on how the run ended: its validation accuracy (if it held out a split), time and speed."""
        if not self.history:
            return "no epoch was trained"
        last = self.history[-1]
        scored = (f"validation accuracy {last['val_acc']:.2%}" if has_validation(last) else
                  "no validation split (val_size=0): score it on the test images with `evaluate`")
        return (f"epoch {last['epoch']}: {scored}; {last['elapsed'] / 60:.1f} minutes, "
                f"{last['images_per_s']:,.0f} images/s in the last epoch")


def has_validation(row: dict) -> bool:
    """Whether a history row holds a validation score (runs without a split store None; older ones NaN)."""
    return row.get("val_acc") is not None and not math.isnan(row["val_acc"])


def lr_at(done: float, peak: float, warmup: float, schedule: str = "cosine") -> float:
    """Learning rate when the fraction ``done`` of training is done (in [0, 1]), continuous everywhere.

    'cosine': linear from 0 to ``peak`` over the first ``warmup`` fraction, then a cosine down to 0.
    'linear': linear from LINEAR_START * peak to ``peak`` over the warmup, then linear down to
    LINEAR_END * peak (airbench's triangle).
    """
    done = min(max(done, 0.0), 1.0)
    start, end = (LINEAR_START, LINEAR_END) if schedule == "linear" else (0.0, 0.0)
    if done < warmup:
        return peak * (start + (1 - start) * done / warmup)
    decayed = (done - warmup) / (1 - warmup)
    if schedule == "linear":
        return peak * (1 + (end - 1) * decayed)
    return peak * 0.5 * (1 + math.cos(math.pi * decayed))


def parameter_groups(model: nn.Module, weight_decay: float, bias_lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on conv and linear weights only. BatchNorm weights and all biases get none, and
    the biases of BatchNorm and the classifier learn ``bias_lr_scale`` times faster than the schedule
    says (a conv's bias, as in the airbench style's stem, does not). Frozen parameters are left out."""
    conv_biases = {id(m.bias) for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is not None}
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    fast = [p for n, p in named if n.endswith("bias") and id(p) not in conv_biases]
    fast_ids = {id(p) for p in fast}
    return [{"params": [p for _, p in named if p.ndim > 1], "weight_decay": weight_decay, "lr_scale": 1.0},
            {"params": [p for _, p in named if p.ndim <= 1 and id(p) not in fast_ids], "weight_decay": 0.0,
             "lr_scale": 1.0},
            {"params": fast, "weight_decay": 0.0, "lr_scale": bias_lr_scale}]


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD over ``parameter_groups``; with ``optimizer='muon'``, the filters of bias-free convolutions (the
    ones a BatchNorm follows) move to a Muon group of their own."""
    groups = parameter_groups(model, config.weight_decay, config.bias_lr_scale)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    filters = {id(m.weight) for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is None}
    weights = groups[0]["params"]
    groups[0]["params"] = [p for p in weights if id(p) not in filters]
    groups.append({"params": [p for p in weights if id(p) in filters], "orthogonalize": True, "weight_decay": 0.0,
                   "lr_scale": config.muon_lr / config.lr, "muon_momentum": config.muon_momentum})
    return Muon(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)


class Lookahead:
    """Slow weights that follow the model, which restarts from them (airbench's lookahead).

    ``update(done)`` moves every float tensor of the model's state (weights and BatchNorm
    statistics) and its slow copy to ``decay * slow + (1 - decay) * model``, with ``decay`` growing
    as ``peak * done ** 3`` (``done``, the fraction of training done): no averaging early on, a long average at the end.
    """

    def __init__(self, model: nn.Module, peak: float = LOOKAHEAD_PEAK):
        self.tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
        self.slow = [t.detach().clone() for t in self.tensors]
        self.peak = peak

    @torch.no_grad()
    def update(self, done: float) -> None:
        weight = 1 - self.peak * min(max(done, 0.0), 1.0) ** 3
        for slow, tensor in zip(self.slow, self.tensors):
            slow.lerp_(tensor, weight)
            tensor.copy_(slow)


@dataclass
class TrainingState:
    """Where a run stands: what a checkpoint stores besides the weights and the optimizer.

    ``batch``, ``rng_state`` and the running sums describe an unfinished epoch: the batches done,
    the augmentation's random state to continue from, and the loss, hits, images and seconds so far.
    """

    epoch: int = 0  # completed epochs
    step: int = 0  # completed optimizer steps
    elapsed: float = 0.0  # seconds of training so far, across resumes
    history: list[dict] = field(default_factory=list)
    batch: int = 0
    rng_state: Tensor | None = None
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0

    def within_epoch(self) -> dict | None:
        """The unfinished epoch's part of a checkpoint (None at an epoch's end)."""
        if self.batch == 0:
            return None
        return {"batch": self.batch, "rng_state": self.rng_state, "loss_sum": self.loss_sum,
                "correct": self.correct, "seen": self.seen, "seconds": self.seconds}

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint) -> "TrainingState":
        within = {k: v for k, v in (checkpoint.within_epoch or {}).items() if k != "lookahead"}
        return cls(checkpoint.epoch, checkpoint.step, checkpoint.elapsed, checkpoint.history, **within)


class Clock:
    """The run's training time, continued across resumes, and how far the run has come."""

    def __init__(self, config: TrainConfig, elapsed: float, steps_per_epoch: int):
        self.limit = config.minutes * 60 if config.minutes else None  # seconds of training allowed
        self.total_steps = None if config.minutes else steps_per_epoch * config.epochs
        self.epochs = config.epochs
        self.start = time.perf_counter() - elapsed

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fraction_done(self, step: int) -> float:
        """The fraction of training done: of the time limit, else of the steps."""
        return self.elapsed() / self.limit if self.limit else (step + 0.5) / self.total_steps

    def out_of_time(self) -> bool:
        return self.limit is not None and self.elapsed() >= self.limit

    def finished(self, state: TrainingState) -> bool:
        return self.out_of_time() if self.limit else state.epoch >= self.epochs


class ProgressBar:
    """tqdm over the steps of the run, or over the seconds of its time budget."""

    def __init__(self, clock: Clock, state: TrainingState, device: torch.device, enabled: bool):
        self.clock = clock
        timed = clock.limit is not None
        self.bar = tqdm(total=round(clock.limit) if timed else clock.total_steps,
                        initial=round(state.elapsed) if timed else state.step, disable=not enabled,
                        unit="s" if timed else "step", desc=f"training on {device.type}", dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of the time budget{postfix}" if timed else None)

    def advance(self) -> None:
        if self.clock.limit is None:
            self.bar.update(1)
        else:
            self.bar.update(min(self.clock.elapsed(), self.clock.limit) - self.bar.n)

    def show(self, **values) -> None:
        self.bar.set_postfix(values)

    def close(self) -> None:
        self.bar.close()


class StopRequest:
    """While training, Ctrl-C (Kernel > Interrupt) asks the loop to stop after the running step,
    so that it can save; a second Ctrl-C stops at once. (Only in the main thread, where signals arrive.)"""

    def __enter__(self) -> "StopRequest":
        self.requested = False
        self.installed = threading.current_thread() is threading.main_thread()
        if self.installed:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self.installed:
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.default_int_handler)


class Trainer:
    """One training run: the model, optimizer and data set up for ``config``, and the loop over them."""

    def __init__(self, network: Network | nn.Module, config: TrainConfig, data: CifarData,
                 run_dir: str | Path | None, device: torch.device):
        self.config, self.data = config, data
        self.model_config = Builder.of_module(network) if isinstance(network, nn.Module) else network  # as recorded
        self.compute = Compute.choose(device, config.amp)
        self.device = self.compute.device
        self.run_dir = Path(run_dir) if run_dir is not None else None
        train_idx, val_idx = train_val_split(data.train_labels, config.val_size, config.seed)
        self.normalization = Normalization.from_images(data.train_images[train_idx])
        self.model = self._build_model(network, data.train_images[train_idx[:5000]])
        self.optimizer = make_optimizer(self.model, config)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.compute.dtype == torch.float16)
        self.lookahead = Lookahead(self.model) if config.lookahead else None
        fill = tuple(round(m * 255) for m in self.normalization.mean)  # erased pixels become 0 after normalizing
        self.batches = TrainingBatches(data.train_images[train_idx].to(self.device),
                                       data.train_labels[train_idx].to(self.device), config.batch_size,
                                       Augmentation(config, fill), config.seed)
        self.val_x, self.val_y = data.train_images[val_idx], data.train_labels[val_idx]
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.net = torch.compile(self.model) if config.compile else self.model
        self.state = TrainingState()
        self.class_shares = None
        self.saved_at = time.perf_counter()

    def _build_model(self, network: Network | nn.Module, whitening_images: Tensor) -> nn.Module:
        """The course's ResNet of a ModelConfig (seeded), a Builder's network, or the module given, on the device."""
        torch.manual_seed(self.config.seed)
        if isinstance(network, nn.Module):
            model = network
        else:
            model = build_model(network) if isinstance(network, ModelConfig) else network.build()
        model = model.to(self.device)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.config.whiten_stem:
            stem = getattr(model, "stem", None)
            if not (isinstance(stem, nn.Sequential) and isinstance(stem[0], nn.Conv2d)):
                raise ConfigurationError("whiten_stem = True needs a network whose first conv is stem[0], as in the "
                                         "course's ResNet: set whiten_stem=False for this network")
            whiten_stem(model, self.normalization(whitening_images))
        return model

    @property
    def checkpoint_path(self) -> Path | None:
        return self.run_dir / CHECKPOINT_FILE if self.run_dir else None

    def resume(self) -> None:
        """Continue from the run folder's checkpoint, if there is one (same settings required)."""
        if not (self.checkpoint_path and self.checkpoint_path.is_file()):
            return
        previous = _resumable_checkpoint(self.checkpoint_path, self.model_config, self.config)
        self.model.load_state_dict(previous.state_dict)
        self.optimizer.load_state_dict(previous.optimizer_state)
        if previous.scaler_state:
            self.scaler.load_state_dict(previous.scaler_state)
        self.normalization, self.class_shares = previous.normalization, previous.class_shares
        if self.lookahead:  # restart from the averaged weights, or an unfinished epoch's own slow weights
            slow = (previous.within_epoch or {}).get("lookahead")
            self.lookahead = Lookahead(self.model)
            if slow is not None:
                self.lookahead.slow = [t.to(self.device) for t in slow]
        self.state = TrainingState.from_checkpoint(previous)

    def run(self, progress: bool = True, on_epoch: Callable[[list[dict]], None] | None = None) -> TrainResult:
        """Train until the epochs or the time budget are used up; return the trained model."""
        self._start_run_folder()
        self.clock = Clock(self.config, self.state.elapsed, len(self.batches))
        if progress:  # on stderr, with the progress bar: stdout keeps only results
            print(self.first_line(), file=sys.stderr, flush=True)
        self.lr = self._scheduled_lr()
        bar = ProgressBar(self.clock, self.state, self.device, progress)
        try:
            with StopRequest() as stop, self._interruptions_explained():
                while not self.clock.finished(self.state):
                    if not self.fit_epoch(bar, stop):
                        break  # the time budget ran out as the epoch began
                    self.end_epoch(bar, on_epoch)
                    if stop.requested:
                        raise TrainingInterrupted(self._stopped_message(saved_now=True))
                if self.class_shares is None and self.state.history:  # the time ran out as an epoch began
                    self._note_class_shares()
                    if self.run_dir:
                        self.save()
        finally:
            bar.close()
        return TrainResult(self.model.eval(), self.state.history, self.normalization, self.run_dir, self.device)

    def _note_class_shares(self) -> None:
        """Once trained: the share of each class the model predicts for training images, which a Kaggle
        test set from the same distribution should get too (``kaggle.check_shift``); kept in the checkpoint."""
        predicted = predict_logits(self.net, self.batches.images[:SHARES_IMAGES], self.normalization,
                                   compute=self.compute).argmax(1)
        self.class_shares = class_shares(predicted, len(self.data.classes)).tolist()

    def first_line(self) -> str:
        """What the run is about to do, where, and in which precision."""
        length = f"{self.config.minutes:g} minutes" if self.config.minutes else f"{self.config.epochs} epochs"
        resumed = f", resuming after step {self.state.step}" if self.state.step else ""
        folder = f"; run folder {self.run_dir}" if self.run_dir else ""
        return (f"training on {self.compute}: "
                f"{len(self.batches.images):,} images, batches of {self.batches.batch_size}, {length}{resumed}{folder}")

    def fit_epoch(self, bar: ProgressBar, stop: StopRequest) -> bool:
        """Train the current epoch from where it stands; False if no step fit in the time budget."""
        state, batches = self.state, self.batches
        self.model.train()
        batches.start_epoch(state.epoch, at=state.batch, random_state=state.rng_state)
        self.loss_sum = torch.tensor(state.loss_sum, device=self.device)  # summed on the device: no waiting
        self.correct = torch.tensor(state.correct, device=self.device)
        self.epoch_started = time.perf_counter() - state.seconds
        for i in range(state.batch, len(batches)):
            if self.clock.out_of_time():
                break
            self.lr = self._scheduled_lr()
            x, y = batches.batch(i)
            loss, logits = self.train_step(x, y)
            self.loss_sum += loss.detach() * len(y)
            self.correct += (logits.detach().argmax(1) == y).sum()
            state.seen += len(y)
            state.batch = i + 1
            if state.step % FINITE_CHECK_EVERY == 0 or state.batch == len(batches):
                self._check_finite(self.loss_sum)
                bar.show(epoch=state.epoch + 1, loss=f"{self.loss_sum.item() / state.seen:.3f}", lr=f"{self.lr:.3g}")
            bar.advance()
            if state.batch < len(batches) and (stop.requested or self._checkpoint_due()):
                self._save_within_epoch()
                if stop.requested:
                    raise TrainingInterrupted(self._stopped_message(saved_now=True))
        self._record_epoch_sums()
        return state.seen > 0

    def _scheduled_lr(self) -> float:
        """The schedule's learning rate for the next step."""
        return lr_at(self.clock.fraction_done(self.state.step), self.config.lr, self.config.warmup, self.config.schedule)

    def train_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """One optimizer step on uint8 images ``x`` at the current learning rate; the loss and logits."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * group["lr_scale"]
        if self.config.channels_last:  # while still uint8: a quarter of the bytes to move
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.normalization(x)
        try:
            with self.compute.autocast():
                logits = self.net(x)
                loss = self.criterion(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
        except torch.OutOfMemoryError:
            raise CifarResnetError(
                f"out of memory on {device_description(self.device)} at batch size {len(x)}: use a smaller batch "
                f"(--batch-size {max(1, len(x) // 2)}); resume keeps the finished epochs") from None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.state.step += 1
        if self.lookahead and self.state.step % LOOKAHEAD_EVERY == 0:
            self.lookahead.update(self.clock.fraction_done(self.state.step))
        return loss, logits

    def end_epoch(self, bar: ProgressBar, on_epoch: Callable[[list[dict]], None] | None) -> None:
        """Validate, add the epoch's history row, save the checkpoint and history, call ``on_epoch``."""
        state = self.state
        self._check_finite(self.loss_sum)
        if self.lookahead:  # validate and checkpoint the averaged weights
            self.lookahead.update(self.clock.fraction_done(state.step))
        val_loss, val_acc = self.validate()
        state.epoch += 1
        state.elapsed = self.clock.elapsed()
        state.history.append({
            "epoch": state.epoch, "step": state.step, "lr": self.lr,
            "train_loss": state.loss_sum / state.seen, "train_acc": state.correct / state.seen,
            "val_loss": val_loss, "val_acc": val_acc, "images_per_s": state.seen / state.seconds,
            "seconds": time.perf_counter() - self.epoch_started, "elapsed": state.elapsed})
        state.batch, state.rng_state, state.loss_sum, state.correct, state.seen, state.seconds = 0, None, 0.0, 0, 0, 0.0
        row = state.history[-1]
        bar.show(epoch=state.epoch, loss=f"{row['train_loss']:.3f}",
                 val_acc=f"{row['val_acc']:.3f}" if has_validation(row) else "no split")
        if self.clock.finished(state):
            self._note_class_shares()
        if self.run_dir:
            self.save()
            write_history(state.history, self.run_dir)
        if on_epoch:
            on_epoch(state.history)

    def validate(self) -> tuple[float | None, float | None]:
        """Loss and accuracy on the validation split (None, None without one)."""
        if not len(self.val_y):
            return None, None
        logits = predict_logits(self.net, self.val_x, self.normalization, batch_size=self.config.eval_batch_size,
                                compute=self.compute)
        return self.criterion(logits, self.val_y).item(), (logits.argmax(1) == self.val_y).float().mean().item()

    def save(self) -> None:
        """Write the checkpoint of the run as it stands (atomically)."""
        within = self.state.within_epoch()
        if within is not None and self.lookahead:
            within["lookahead"] = self.lookahead.slow
        save_checkpoint(Checkpoint(
            self.model_config, self.normalization, self.model.state_dict(), self.config, self.state.epoch,
            self.state.step, self.state.elapsed, self.state.history, self.optimizer.state_dict(),
            self.scaler.state_dict(), self.clock.finished(self.state) and within is None, within, self.class_shares),
            self.checkpoint_path)
        self.saved_at = time.perf_counter()

    def _checkpoint_due(self) -> bool:
        return self.run_dir is not None and time.perf_counter() - self.saved_at >= CHECKPOINT_SECONDS

    def _save_within_epoch(self) -> None:
        if self.run_dir:
            self._check_finite(self.loss_sum)  # never replace a good checkpoint with a diverged one
            self._record_epoch_sums()
            self.state.rng_state = self.batches.random_state(self.state.batch)
            self.state.elapsed = self.clock.elapsed()
            self.save()

    def _record_epoch_sums(self) -> None:
        """Copy the epoch's running loss, hits and training seconds into the state (waits for the device)."""
        self.state.loss_sum, self.state.correct = self.loss_sum.item(), int(self.correct.item())
        self.state.seconds = time.perf_counter() - self.epoch_started

    def _start_run_folder(self) -> None:
        """Create the run folder, clear leftovers of a killed write, and describe the run in run.json."""
        if not self.run_dir:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.run_dir.glob(f".{CHECKPOINT_FILE}.*.tmp"):
            leftover.unlink()
        with atomic_write(self.run_dir / "run.json") as f:
            json.dump({"model_config": self.model_config.to_dict(), "train_config": self.config.to_dict(),
                       "normalization": self.normalization.to_dict(), "data": repr(self.data),
                       "device": device_description(self.device), "precision": precision_name(self.compute.dtype),
                       "autocast_dtype": str(self.compute.dtype).removeprefix("torch.") if self.compute.dtype else None},
                      f, indent=1)

    @contextlib.contextmanager
    def _interruptions_explained(self):
        """Turn a KeyboardInterrupt into a TrainingInterrupted that says what was kept."""
        try:
            yield
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:
            raise TrainingInterrupted(self._stopped_message(saved_now=False)) from None

    def _stopped_message(self, saved_now: bool) -> str:
        where = f"interrupted in epoch {self.state.epoch + 1} after step {self.state.step}"
        if not self.run_dir:
            return f"{where}; nothing was saved (no run folder): pass run_dir to keep a checkpoint"
        if not self.checkpoint_path.is_file():
            return f"{where}; no checkpoint was written yet in {self.run_dir}: train again to start over"
        kept = load_checkpoint(self.checkpoint_path)
        position = f"step {kept.step}" + ("" if kept.within_epoch else f", the end of epoch {kept.epoch}")
        saved = "saved now" if saved_now else f"saved {time.perf_counter() - self.saved_at:.0f} s before"
        return (f"{where}; {self.checkpoint_path} keeps the run at {position} ({kept.elapsed / 60:.1f} minutes of "
                f"training, {saved}): run again with resume=True (or `train --resume`) to continue")

    def _check_finite(self, loss_sum: Tensor) -> None:
        if not torch.isfinite(loss_sum):
            kept = f"; the last good checkpoint {self.checkpoint_path} is kept" if self.checkpoint_path else ""
            raise TrainingDivergedError(f"the training loss became {loss_sum.item()} by step {self.state.step} "
                                        f"(learning rate {self.lr:.4g}){kept}: lower the learning rate or "
                                        f"turn off mixed precision (amp='off')")


def fit(model_config: Network | nn.Module, train_config: TrainConfig | None, data: CifarData,
        run_dir: str | Path | None = None, *, device: torch.device | str | None = None,
        resume: bool = False, progress: bool = True,
        on_epoch: Callable[[list[dict]], None] | None = None) -> TrainResult:
    """Train a network on ``data`` and return it with its history.

    model_config: the course's ResNet as a ModelConfig, a student's own network as a
              ``network.Builder``, or any nn.Module (trained in place; its checkpoint records its
              class as the builder, so a class defined in a notebook reloads in that notebook).

    run_dir:  where checkpoint.pt, history.json, history.csv and run.json are written (None keeps
              everything in memory).
    resume:   continue from run_dir/checkpoint.pt with the same settings, if it exists.
    progress: print the run's first line and show a progress bar.
    on_epoch: called with the history after each epoch (the notebooks draw live curves with it).
    """
    trainer = Trainer(model_config, train_config or TrainConfig(), data, run_dir, device)
    if resume:
        trainer.resume()
    return trainer.run(progress, on_epoch)


@dataclass(frozen=True)
class TrainingEstimate:
    """How long ``fit`` will take: seconds of training, and the speed it was estimated from."""

    seconds: float
    images_per_s: float | None  # None when a time budget sets the length
    description: str

    def __str__(self) -> str:
        return self.description


def estimate_training_time(model_config: ModelConfig, train_config: TrainConfig, data: CifarData,
                           device: torch.device | str | None = None, steps: int = 3) -> TrainingEstimate:
    """How long ``fit(model_config, train_config, data)`` will train: its time budget, or its epochs
    at the speed of a few real training steps timed here on random images (after one warm-up step)."""
    device = select_device(device)
    validation = "" if train_config.val_size == 0 else ", plus a validation pass after each epoch"
    if train_config.minutes:
        return TrainingEstimate(train_config.minutes * 60, None,
                                f"{train_config.minutes:g} minutes of training (the recipe's time budget){validation}")
    train_images = len(train_val_split(data.train_labels, train_config.val_size, train_config.seed)[0])
    batch = min(train_config.batch_size, train_images)
    timing = dataclasses.replace(train_config, val_size=0, whiten_stem=False, compile=False)
    random_images = CifarData(torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8), torch.arange(batch) % 10,
                              torch.empty(0, 3, 32, 32, dtype=torch.uint8), torch.empty(0, dtype=torch.long),
                              "random images for timing")
    trainer = Trainer(model_config, timing, random_images, None, device)
    trainer.clock, trainer.lr = Clock(timing, 0.0, 1), 0.0  # a zero learning rate: the weights do not matter
    trainer.batches.start_epoch(0)
    x, y = trainer.batches.batch(0)
    trainer.train_step(x, y)[0].item()  # warm-up: allocations, kernel choice
    start = time.perf_counter()
    for _ in range(steps):
        loss = trainer.train_step(x, y)[0]
    loss.item()  # wait for the device
    images_per_s = steps * batch / (time.perf_counter() - start)
    seconds = train_config.epochs * (train_images // batch) * batch / images_per_s
    return TrainingEstimate(seconds, images_per_s, (
        f"about {_duration(seconds)} of training: {train_config.epochs} epochs of {train_images:,} images at "
        f"{images_per_s:,.0f} images/s (timed just now on {device_description(device)}){validation}"))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.0f} minutes" if seconds < 5400 else f"{seconds / 3600:.1f} hours"


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


def _resumable_checkpoint(path: Path, model_config: Network, train_config: TrainConfig) -> Checkpoint:
    previous = load_checkpoint(path)
    check_architecture(previous, model_config, path)
    if previous.train_config != train_config:
        old, new = previous.train_config.to_dict(), train_config.to_dict()
        diff = "; ".join(f"{k}: {old[k]} vs {new[k]}" for k in new if old.get(k) != new[k])
        raise CifarResnetError(f"cannot resume {path}: it was trained with other settings (checkpoint vs now: "
                               f"{diff}); resume with the same settings or train into a new folder")
    return previous
